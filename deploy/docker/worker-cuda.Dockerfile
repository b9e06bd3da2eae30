# syntax=docker/dockerfile:1
# The CUDA worker (mig-worker with the `cuda` feature), from the repository
# root:
#   docker build -f deploy/docker/worker-cuda.Dockerfile \
#       --build-arg CUDA_COMPUTE_CAP=90 -t mig-gateway/worker-cuda:0.1.0 .
#
# Built as `make cuda` builds it (scripts/build-cuda.sh): NVIDIA's CUDA 13.0
# toolkit from PyPI wheels pinned by sha256 (scripts/cuda.lock), no CUDA
# install in the build image. It runs on NVIDIA's CUDA 13.0 runtime image,
# which brings libcudart.so.13, libcublas(Lt).so.13 and libcurand.so.10; the
# driver's libcuda.so.1 comes from the node (NVIDIA container toolkit).
# CUDA_COMPUTE_CAP: 90 for H100/H200, 80 for A100.
#
# Bases pinned by tag (no registry access where this was written); pin them
# by digest (`docker buildx imagetools inspect <image>`) before a release.
#
# No HEALTHCHECK: Kubernetes ignores it and probes grpc.health.v1 on the
# worker's port itself (deploy/k8s). Models are not baked in: they come from
# a volume (/models). No secrets: the registration token is mounted.

FROM rust:1.95.0-bookworm AS build
ARG CUDA_COMPUTE_CAP=90
WORKDIR /src
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY . .
ENV MIG_CUDA_CACHE=/opt/cuda-wheels PIP_BREAK_SYSTEM_PACKAGES=1
RUN CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP} PYTHON=python3 scripts/build-cuda.sh \
    && cp target/cuda/mig-worker-cuda-sm${CUDA_COMPUTE_CAP} /mig-worker

FROM nvidia/cuda:13.0.2-runtime-ubuntu24.04
# The runtime image's `ubuntu` user is uid 1000; ours is 65532 as in the
# gateway image and the Kubernetes manifests.
RUN groupadd --system --gid 65532 mig \
    && useradd --system --uid 65532 --gid mig --home-dir /nonexistent --shell /usr/sbin/nologin mig
COPY --from=build /mig-worker /usr/local/bin/mig-worker
ENV MIG_WORKER_DEVICE=cuda MIG_WORKER_LISTEN=0.0.0.0:50061
USER 65532:65532
EXPOSE 50061 9401
ENTRYPOINT ["/usr/local/bin/mig-worker"]
CMD ["serve", "--help"]
