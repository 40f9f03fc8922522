"""Policy latency (ms per chunk: DDPM-100, DDIM-10, DDIM-4) and training throughput on this machine.

The shipped push_cube configuration (96x96 image + 7 joint positions -> 16 x 7 actions) and its
state-only variant. Writes the `policy_latency` section of docs/benchmarks.md.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

SAMPLERS = (('ddpm', 100), ('ddim', 10), ('ddim', 4))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--quick', action='store_true', help='fewer repeats')
    args = parser.parse_args()
    from ros2_imitation.policy.benchmark import measure
    from ros2_imitation.policy.config import load_policy_file

    image, _ = load_policy_file('push_cube', {'state_dim': 7, 'action_dim': 7, 'image_shape': [96, 96, 3]})
    state_only = image.replace(image_keys=(), image_shape=None, crop_shape=None)
    # Diffusion Policy's published CNN U-Net size (down_dims 256-512-1024, step embedding 128) on the
    # same inputs, encoder and samplers: what the smaller U-Net buys
    reference = image.replace(down_dims=(256, 512, 1024), diffusion_step_embed_dim=128)
    repeats = 2 if args.quick else args.repeats
    rows = []
    for name, config in (('image + state (shipped config)', image), ('state only', state_only),
                         ("image + state, Diffusion Policy's U-Net size (256-512-1024)", reference)):
        r = measure(config, args.device, 64, repeats, SAMPLERS)
        rows.append((name, r))
        print(name, r)
    head = '| policy | params | ' + ' | '.join(f'{k.upper()}-{n} (ms/chunk)' for k, n in SAMPLERS) + \
        ' | train step, batch 64 (ms) | training samples/s |'
    table = [head, '|' + '---|' * (5 + len(SAMPLERS) - 1)]
    for name, r in rows:
        table.append(f"| {name} | {r['params'] / 1e6:.2f} M | " +
                     ' | '.join(f"{r[f'predict_{k}{n}_ms']:.1f}" for k, n in SAMPLERS) +
                     f" | {r['train_step_ms']:.0f} | {r['train_samples_per_s']:.0f} |")
    body = (f'Device `{args.device}`, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1 '
            f'inference (one chunk = the whole denoising loop), best of {repeats} runs. Inference time is '
            'steps x one U-Net forward plus the observation encoding. The last row is the reference U-Net of '
            "Diffusion Policy's published size (ConditionalUnet1D down_dims 256-512-1024, step embedding 128) "
            'with everything else equal (encoder, horizon 16, samplers), measured in the same run.\n\n'
            + '\n'.join(table))
    write_section(f'policy_latency_{args.device.split(":")[0]}', f'Policy latency and training throughput ({args.device})', body)


if __name__ == '__main__':
    main()
