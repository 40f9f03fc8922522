# make install: a fresh machine -> .venv with everything; make demo: the main job; make test: the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build: the only one on machines without a GPU, and what the tests use everywhere.
TORCH ?= torch==2.13.0
APT_PACKAGES := libusb-1.0-0 libegl1 libegl-mesa0 libgl1-mesa-dri
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install apt demo test bench clean lerobot-venv test-lerobot install-jazzy test-jazzy test-jazzy-ci

install: apt $(VENV)/.installed

apt:
	@if command -v apt-get >/dev/null 2>&1; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "apt-get install $$missing"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	  fi; \
	else echo "no apt-get: install the EGL and libusb runtime libraries yourself"; fi

$(VENV)/.installed: setup.py docker/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -c docker/requirements.txt -e '.[ros,realsense,test,view,fast]'
	$(PY) -c "import rclpy, torch, diffusers, mujoco, rosbags; print('installed: torch', torch.__version__, '| mujoco', mujoco.__version__)"
	touch $@

demo: install
	$(VENV)/bin/ros2-imitation demo

test: install
	$(VENV)/bin/python -m pytest -q -rfER --durations=15 test

# Optional: LeRobot's own loader and writer against our datasets (test/test_lerobot_compat.py), in a
# venv of its own on CPU wheels (lerobot pulls a CUDA torch by default); ~4 min, 1.7 GB.
lerobot-venv:
	python3 -m venv .venv-lerobot
	.venv-lerobot/bin/pip install -q $(TORCH)
	.venv-lerobot/bin/pip install -q --no-deps lerobot==0.4.4
	echo $(TORCH) > .venv-lerobot/constraints.txt
	.venv-lerobot/bin/pip install -q -c .venv-lerobot/constraints.txt 'datasets>=4,<5' 'huggingface-hub>=0.34.2,<0.36' \
	  'av>=15,<16' torchvision==0.28.0 accelerate draccus==0.10.0 einops deepdiff jsonlines termcolor pandas pyarrow \
	  fsspec pillow 'packaging<26' 'opencv-python-headless<4.13' 'diffusers<0.36' 'gymnasium<2'
	.venv-lerobot/bin/pip install -q --no-deps torchcodec==0.12.0
	$(SUDO) apt-get install -y -qq --no-install-recommends libavdevice59 libavfilter8 libavformat59 libavcodec59 \
	  libavutil57 libswscale6 libswresample4

test-lerobot: install
	$(VENV)/bin/python -m pytest -q test/test_lerobot_compat.py

# ROS 2 Jazzy (the LTS the robots run) beside the default Kilted: the same package and torch with the
# Jazzy client wheels (setup.py's [ros-jazzy] extra) in their own venv; never both in one.
JAZZY_VENV ?= .venv-jazzy
JAZZY_PY := $(JAZZY_VENV)/bin/python
# what test-jazzy runs: the whole suite unless told
JAZZY_TESTS ?= test
# what CI runs on Jazzy (test-jazzy-ci): every node and graph once on the Jazzy client libraries (the
# `ros` tests), without the scenarios whose Jazzy run would only repeat the core's logic the Kilted run
# already tests: the fault-injection suite (test/fault), the multi-node task scenarios (pick_place,
# push_t, record-demos), the policy node's chunk timing, runtime and marker cases, and the position-mode
# sweep (e2e runs that path on Jazzy). Start-up, parameters, topics, services, QoS, executors and
# signals stay: that is where the client libraries differ.
JAZZY_CI_TESTS := -m ros test --ignore=test/fault --ignore=test/test_pick_place_graph.py \
	--ignore=test/test_push_t_graph.py --ignore=test/test_record_demos.py \
	--deselect test/test_policy_node.py::test_chunks_are_timestamped_ahead_and_strictly_timed \
	--deselect test/test_policy_node.py::test_the_runtime_argument_runs_the_policy_on_onnx_runtime \
	--deselect test/test_policy_node.py::test_each_chunk_is_drawn_as_an_end_effector_path_in_the_base_frame \
	--deselect 'test/test_controller_node.py::test_sine_sweep_tracked[position-/position_controller/commands]'

install-jazzy: apt $(JAZZY_VENV)/.installed

$(JAZZY_VENV)/.installed: setup.py docker/requirements.txt
	python3 -m venv $(JAZZY_VENV)
	$(JAZZY_PY) -m pip install -q --upgrade pip
	$(JAZZY_PY) -m pip install -q $(TORCH)
	$(JAZZY_PY) -m pip install -q -c docker/requirements.txt -e '.[ros-jazzy,realsense,test,view,fast]'
	$(JAZZY_PY) -c "from importlib.metadata import version as v; import rclpy, torch, diffusers, mujoco, rosbags; \
	  assert v('ros-rclpy').startswith('7.1.'), 'not the Jazzy rclpy: ' + v('ros-rclpy'); \
	  print('installed: rclpy', v('ros-rclpy'), '(Jazzy) | torch', torch.__version__, '| mujoco', mujoco.__version__)"
	touch $@

test-jazzy: install-jazzy
	$(JAZZY_PY) -m pytest -q -rfER --durations=15 $(JAZZY_TESTS)

test-jazzy-ci: install-jazzy
	$(JAZZY_PY) -m pytest -q -rfER --durations=15 $(JAZZY_CI_TESTS)

bench: install
	$(PY) bench/run_all.py --quick

clean:
	rm -rf $(VENV) $(JAZZY_VENV) .venv-lerobot build install log *.egg-info
