# syntax=docker/dockerfile:1
#
# comfy-worker: ComfyUI + the RunPod worker in one image. docs/deployment.md explains every
# build argument, the targets and the secret.
#
#   docker build -t comfy-worker .                                # models of MODEL_SET (sd15)
#   docker build --target base -t comfy-worker:base .             # no models
#   docker build --build-arg MODEL_SET=flux1-schnell \
#       --secret id=hf_token,src=$HOME/.cache/huggingface/token -t comfy-worker:flux .
#
# Stages: uv (the installer binary), runtime-os (what every stage shares), builder (compilers,
# git: ComfyUI, custom nodes and the virtualenv are assembled here), models (downloads, checked),
# base (runtime without models: a target of its own), full (base + models; the default).

# The base image only needs the driver plumbing (NVIDIA_* variables, the CUDA>=13.0 driver
# requirement): the torch wheels bring their own CUDA and cuDNN libraries, so the larger
# cudnn-runtime image would ship them twice. CUDA 13.0 because ComfyUI 0.33.0 asks for cu130
# PyTorch builds on current GPUs, and PyPI's torch 2.14.1 (the lock's) is a cu130 build.
ARG BASE_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04

FROM ghcr.io/astral-sh/uv:0.8.22 AS uv

FROM ${BASE_IMAGE} AS runtime-os
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1
# Ubuntu's python3.12 is the interpreter behind /opt/venv in every stage, so the venv built in
# `builder` runs unchanged in `base`. libgl1 and libglib2.0 are what opencv-based custom nodes
# load at import; they cost a few MB.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates libgl1 libglib2.0-0t64 python3.12 \
    && rm -rf /var/lib/apt/lists/*

FROM runtime-os AS builder
# Stages built on runtime-os inherit its shell; it is repeated so each stage reads on its own.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# docker/update_comfyui.sh <version> <commit> moves these two, the requirements copy and the lock
# together; the clone below must be that very commit, whatever the tag points at today.
ARG COMFYUI_VERSION=v0.33.0
ARG COMFYUI_COMMIT=2f35f4a08176d993cded35dac3332be4f7287f41
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
# Compilers and headers stay in this stage: some custom nodes' requirements build from source.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential git python3.12-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv
# Bytecode compiled now saves that work on every cold start; copy mode because the cache is a
# separate mount that hard links cannot cross.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
# Torch first, in its own layer: it is the largest and changes least. It comes from
# TORCH_INDEX_URL (CUDA wheels, versions 2.14.1+cu130 and so on), which the next step accepts as
# the lock's torch==2.14.1: a pin without a local label matches every local build of it. Torch's
# own dependencies (numpy, pillow, sympy, ...) are held to the lock here too, so a new release
# of one is never installed only to be swapped back by the next step; PyPI stands beside the
# torch index for the pinned versions that index does not carry (best match across both).
COPY docker/torch-requirements.txt docker/requirements.lock /opt/docker/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv venv --seed --python /usr/bin/python3.12 /opt/venv \
    && uv pip install --python /opt/venv/bin/python --index-url "${TORCH_INDEX_URL}" \
        --extra-index-url https://pypi.org/simple --index-strategy unsafe-best-match \
        --constraint /opt/docker/requirements.lock -r /opt/docker/torch-requirements.txt
# Everything else is installed from docker/requirements.lock: every package pinned, resolved for
# this image's Python 3.12 on linux x86_64, so two builds get the same packages. The lock is made
# from the worker's requirements.txt, docker/torch-requirements.txt and ComfyUI's
# requirements.txt, of which docker/comfyui-v0.33.0-requirements.txt is a verbatim copy (the
# list only, as data: ComfyUI's code is never committed here). The copy is compared with the
# cloned ComfyUI's file, so changing COMFYUI_VERSION without remaking the lock fails here. To
# remake it (tests/test_image_lock.py checks it still satisfies all three inputs):
#   uv pip compile --python-version 3.12 --python-platform x86_64-unknown-linux-gnu \
#     requirements.txt docker/comfyui-v0.33.0-requirements.txt docker/torch-requirements.txt \
#     -o docker/requirements.lock
# `uv pip check` then fails the build if the torch layer's wheels (another TORCH_INDEX_URL, say)
# need other versions of their dependencies than the lock installed.
COPY docker/comfyui-v0.33.0-requirements.txt /opt/docker/
RUN --mount=type=cache,target=/root/.cache/uv \
    git clone --depth 1 --branch "${COMFYUI_VERSION}" \
        https://github.com/Comfy-Org/ComfyUI.git /comfyui \
    && if [ "$(git -C /comfyui rev-parse HEAD)" != "${COMFYUI_COMMIT}" ]; then \
        echo "error: ComfyUI's tag ${COMFYUI_VERSION} is $(git -C /comfyui rev-parse HEAD)," \
            "not the pinned COMFYUI_COMMIT ${COMFYUI_COMMIT}" >&2; \
        exit 1; \
    fi \
    && rm -rf /comfyui/.git \
    && if ! cmp -s /comfyui/requirements.txt /opt/docker/comfyui-v0.33.0-requirements.txt; then \
        echo "error: ComfyUI ${COMFYUI_VERSION}'s requirements.txt is not" \
            "docker/comfyui-v0.33.0-requirements.txt, which the lock was made from:" \
            "copy it there (renamed) and remake docker/requirements.lock" >&2; \
        exit 1; \
    fi \
    && uv pip install --python /opt/venv/bin/python -r /opt/docker/requirements.lock \
    && uv pip check --python /opt/venv/bin/python
# Custom nodes' requirements are constrained by the whole lock, not only torch: a node asking
# for another version of any pinned package (pillow<12, pydantic<2.10, ...) fails the build,
# and install_custom_nodes.sh names the node and its list line; uv names the package.
COPY docker/install_custom_nodes.sh docker/custom_nodes.txt /opt/docker/
RUN --mount=type=cache,target=/root/.cache/uv \
    PIP_INSTALL="uv pip install --python /opt/venv/bin/python --constraint /opt/docker/requirements.lock" \
    bash /opt/docker/install_custom_nodes.sh /opt/docker/custom_nodes.txt /comfyui/custom_nodes \
    && uv pip check --python /opt/venv/bin/python

FROM runtime-os AS models
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG MODEL_SET=sd15
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
COPY docker/fetch_models.sh docker/models.tsv /opt/docker/
# The Hugging Face token arrives as a BuildKit secret, mounted for this step only, and /tmp
# (where the request header is written) is a tmpfs: the token never reaches a layer or the
# image history. Sets without gated files need no secret.
RUN --mount=type=secret,id=hf_token,required=false \
    --mount=type=tmpfs,target=/tmp \
    bash /opt/docker/fetch_models.sh "${MODEL_SET}" /models /opt/docker/models.tsv

FROM runtime-os AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV COMFYUI_DIR=/comfyui \
    COMFYUI_PYTHON=/opt/venv/bin/python \
    PATH=/opt/venv/bin:${PATH}
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /comfyui /comfyui
# The worker's code comes before the check, so the check imports it in the image's interpreter:
# a worker that cannot import here would otherwise only fail on the endpoint's first cold start.
WORKDIR /worker
COPY handler.py test_input.json ./
COPY comfy_runtime ./comfy_runtime
COPY workflows ./workflows
COPY docker/check_comfyui.sh /opt/docker/check_comfyui.sh
# Fails the build when the worker's code, its settings or bundled workflows, ComfyUI, a built-in
# node or a custom node do not import. The files the test run leaves (database, user settings,
# temp) are removed so the worker starts from a clean ComfyUI.
RUN WORKER_DIR=/worker bash /opt/docker/check_comfyui.sh \
    && rm -rf /comfyui/user /comfyui/temp
CMD ["/opt/venv/bin/python", "-u", "handler.py"]

FROM base AS full
COPY --from=models /models/ /comfyui/models/
