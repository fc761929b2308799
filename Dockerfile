# The agent image: every in-cluster component of network-mapper, each selected by the container's
# `command` (a console script of pyproject.toml [project.scripts]: network-mapper-mapper,
# network-mapper-sniffer, network-mapper-kafka-watcher, network-mapper-istio-watcher,
# network-mapper-aws-proxy, network-mapper-aws-dns-forwarder, network-mapper-aws-webhook).
# The helm chart sets `command` for each; the default CMD only prints the CLI's help.
#
#   docker build -t network-mapper:dev .
#
# Two stages: the builder installs the project and its dependencies into a venv; the final stage
# is the slim Python base plus libpcap (the sniffer's capture) plus that venv, and nothing else.

FROM python:3.11.11-slim-bookworm AS builder

# Compilers for any dependency without a wheel for the target architecture; this stage only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/network-mapper
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY cloud_functions ./cloud_functions
RUN /opt/network-mapper/bin/pip install --no-cache-dir .

FROM python:3.11.11-slim-bookworm

# libpcap: the sniffer opens its capture through scapy's ctypes binding of libpcap.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpcap0.8=1.10.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 network-mapper \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin network-mapper

# The venv keeps its path: its scripts' shebangs name /opt/network-mapper/bin/python.
COPY --from=builder /opt/network-mapper /opt/network-mapper

ENV PATH=/opt/network-mapper/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# uid 1000 as the chart's runAsUser; the sniffer's pod runs as root with only NET_RAW and SYS_PTRACE.
USER 1000:1000
WORKDIR /

CMD ["network-mapper", "--help"]
