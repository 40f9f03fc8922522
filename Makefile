# make install: a fresh machine -> .venv with everything; make demo: the main job; make test: the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build: the only one on machines without a GPU, and what the tests use everywhere.
TORCH ?= torch==2.13.0
APT_PACKAGES := libusb-1.0-0 libegl1 libegl-mesa0 libgl1-mesa-dri
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install apt demo test bench clean

install: apt $(VENV)/.installed

apt:
	@if command -v apt-get >/dev/null 2>&1; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "apt-get install $$missing"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	  fi; \
	else echo "no apt-get: install the EGL and libusb runtime libraries yourself"; fi

$(VENV)/.installed: setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[ros,realsense,test,view]'
	$(PY) -c "import rclpy, torch, diffusers, mujoco, rosbags; print('installed: torch', torch.__version__, '| mujoco', mujoco.__version__)"
	touch $@

demo: install
	$(VENV)/bin/ros2-imitation demo

test: install
	$(VENV)/bin/python -m pytest -q test

bench: install
	$(PY) bench/run_all.py --quick

clean:
	rm -rf $(VENV) build install log *.egg-info
