"""One real Kubernetes node on this machine, next to the control plane of stack/kube.py: a second
containerd (its own root, state dir and socket, CRI on), kubelet, kube-proxy (iptables mode) and a
CNI bridge, plus kube-scheduler, from what scripts/build-node.sh builds and installs. Pods really
run (runc, in network namespaces on a bridge of this machine). See ../shared/docs/infra-recipes.md
section 10 for the recipe and its traps, and docs/cluster.md for what was measured here.

Addresses, all on this machine:

- ``cryptopipe0``, a dummy interface this module creates (a bridge without ports on kernels
  without the dummy driver, such as this VM's), holds the node's address (``NODE_IP``, a /32). The apiserver binds and advertises it, so pods reach it through the ``kubernetes``
  Service (10.96.0.1, in the serving certificate's SANs); kubelet and kube-proxy use it as the
  node IP. Nothing listens on another interface.
- ``cryptopipe-br0``, the CNI bridge (gateway 10.244.0.1), pods in 10.244.0.0/24, Services in
  10.96.0.0/16.

It needs root (interfaces, iptables, mounts, cgroups, sysctls). kubelet, kube-proxy and the CNI
plugins change the host: ``HostRecord`` writes down what they change *before* anything starts
(``<work dir>/node/host-before.json``) and ``teardown`` undoes it after the processes stopped:
``kube-proxy --cleanup``, the KUBE-*/CNI-* chains and the jumps to them (IPv4 and IPv6), the
iptables-nft tables that did not exist before, kubelet's and containerd's mounts (kubelet's bind
mount of its root dir onto itself included), pod network namespaces, the ``kubepods`` cgroups,
the bridge and the dummy interface, the files kubelet and the CNI plugins leave outside the work
dir, and the sysctls (kubelet: vm.overcommit_memory, kernel.panic, kernel.panic_on_oops, ...; the
bridge plugin: ip_forward).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptopipe_dev.stack import paths
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.procs import LOOPBACK, ManagedProcess, free_port, wait_for

log = logging.getLogger(__name__)

NODE_NAME = "cryptopipe-node"
DUMMY_LINK = "cryptopipe0"
BRIDGE = "cryptopipe-br0"
# a private /32 that is on no network of this machine; override when it is taken
NODE_IP = os.environ.get("CRYPTOPIPE_NODE_IP", "10.213.0.1")
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
CLUSTER_DNS_IP = "10.96.0.10"  # CoreDNS's Service, a later step
CLUSTER_CIDR = "10.244.0.0/16"
POD_CIDR = "10.244.0.0/24"
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
PAUSE_IMAGE_DEFAULT = "registry.k8s.io/pause:3.10.1"

NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler")
HOST_TOOLS = ("containerd", "ctr", "runc", "iptables", "iptables-save", "ip6tables", "ip6tables-save", "ip", "openssl")

# What kubelet (setupKernelTunables), kube-proxy and the CNI bridge plugin may change on the host.
# Writing ip_forward also rewrites every interface's forwarding, so it is restored first.
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.default.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.default.forwarding",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.conf.all.route_localnet",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.netfilter.nf_conntrack_tcp_be_liberal",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-arptables",
)
IPTABLES = {"ipv4": ("iptables", "iptables-save", "ip"), "ipv6": ("ip6tables", "ip6tables-save", "ip6")}
TABLES = ("filter", "nat", "mangle", "raw", "security")
CHAIN_PREFIXES = ("KUBE-", "CNI-")
# Directories outside the work dir that kubelet, containerd's shims and libcni create and use
# (kubelet hard-codes /var/log/containers; the shims' sockets live in /run/containerd/s; libcni
# caches results in /var/lib/cni): removed on teardown when they did not exist before.
HOST_DIRS = ("/var/log/containers", "/run/containerd", "/var/lib/cni", "/run/netns", "/var/lib/kubelet")
# kubelet's device manager listens here whatever --root-dir says (hard-coded in kubelet); the socket
# stays behind when kubelet stops
KUBELET_DEVICE_PLUGIN_SOCKET = Path("/var/lib/kubelet/device-plugins/kubelet.sock")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class NeedsRoot(paths.MissingDependency):
    pass


def require_root(what: str = "cryptopipe dev cluster up --node") -> None:
    if os.geteuid() != 0:
        raise NeedsRoot(
            f"{what} needs root: it creates a network interface and a bridge, iptables rules, "
            "mounts, cgroups and sysctls for a real kubelet (and restores them on `down`). "
            "Run it as root (e.g. `sudo -E env PATH=$PATH cryptopipe dev cluster up --node`)."
        )


def node_bin() -> Path:
    """Where scripts/build-node.sh installs kubelet, kube-proxy, kube-scheduler, coredns and pause."""
    default = paths.cache_dir() / "node" / "bin"
    return Path(os.environ.get("CRYPTOPIPE_NODE_BIN", default))


def node_images() -> Path:
    return node_bin().parent / "images"


def require_node_binaries(bin_dir: Path | None = None) -> dict[str, Path]:
    bin_dir = bin_dir or node_bin()
    found: dict[str, Path] = {}
    missing = []
    for name in NODE_BINARIES:
        path = bin_dir / name
        if path.is_file() and os.access(path, os.X_OK):
            found[name] = path
        else:
            missing.append(str(path))
    for tool in HOST_TOOLS:
        if which := shutil.which(tool, path=_sbin_path()):
            found[tool] = Path(which)
        else:
            missing.append(tool)
    if not (CNI_BIN_DIR / "bridge").is_file():
        missing.append(str(CNI_BIN_DIR / "bridge"))
    images = node_images()
    if not (images / "pause.ref").is_file():
        missing.append(str(images / "pause.ref"))
    if missing:
        raise paths.MissingDependency(f"the node needs {', '.join(missing)}: run scripts/build-node.sh (as root)")
    return found


def _sbin_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def _run(
    *args: str | os.PathLike[str], check: bool = True, timeout: float = 60, **kw: Any
) -> subprocess.CompletedProcess[str]:
    argv = [os.fspath(a) for a in args]
    if not os.path.isabs(argv[0]):
        argv[0] = shutil.which(argv[0], path=_sbin_path()) or argv[0]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


# --- the host before ---------------------------------------------------------------------------------


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", *name.split(".")).write_text(value + "\n")


def iptables_chains(family: str) -> dict[str, list[str]]:
    """{table: [chain, ...]} as ``iptables-save`` shows them (tables that do not exist are absent)."""
    save = IPTABLES[family][1]
    out = _run(save, check=False).stdout
    chains: dict[str, list[str]] = {}
    table = ""
    for line in out.splitlines():
        if line.startswith("*"):
            table = line[1:]
            chains[table] = []
        elif line.startswith(":") and table:
            chains[table].append(line[1:].split()[0])
    return chains


def nft_tables() -> list[str] | None:
    """``nft list tables`` as ["ip filter", ...]; None without the nft binary."""
    if not shutil.which("nft", path=_sbin_path()):
        return None
    out = _run("nft", "list", "tables", check=False).stdout
    return sorted(line.removeprefix("table ").strip() for line in out.splitlines() if line.startswith("table "))


def links() -> list[str]:
    out = _run("ip", "-o", "link", "show", check=False).stdout
    return sorted(m.group(1).split("@", 1)[0] for m in re.finditer(r"^\d+: ([^:]+):", out, re.M))


def record_host() -> dict[str, Any]:
    return {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sysctls": {name: read_sysctl(name) for name in SYSCTLS},
        "iptables": {family: iptables_chains(family) for family in IPTABLES},
        "nft_tables": nft_tables(),
        "links": links(),
        "dirs": {d: os.path.lexists(d) for d in HOST_DIRS},
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "cgroups": sorted(str(p) for p in CGROUP_ROOT.glob("*/kubepods")),
    }


# --- certificates ------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path, extra: tuple[str, ...] = ()) -> None:
    _run("openssl", *args, *extra, cwd=cwd)


def make_pki(pki: Path, *, node_ip: str, node_name: str) -> None:
    """A CA, the apiserver's serving certificate (SANs: the node IP, 127.0.0.1, 10.96.0.1 and the
    ``kubernetes`` Service names) and client certificates for the components. Kept across ``up``s;
    the serving certificate is remade when its addresses changed."""
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "ca.crt").exists():
        _openssl(
            *["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650"],
            cwd=pki,
            extra=("-subj", "/CN=cryptopipe-dev-ca"),
        )
    sans = [
        f"IP:{node_ip}",
        "IP:127.0.0.1",
        f"IP:{KUBERNETES_SERVICE_IP}",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    leaves = {
        # name: (subject, extended key usage, SANs)
        "apiserver": ("/CN=kube-apiserver", "serverAuth", sans),
        "apiserver-kubelet-client": ("/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth", []),
        "kubelet": (f"/O=system:nodes/CN=system:node:{node_name}", "clientAuth", []),
        "kube-proxy": ("/CN=system:kube-proxy", "clientAuth", []),
        "kube-scheduler": ("/CN=system:kube-scheduler", "clientAuth", []),
    }
    for name, (subject, usage, alt) in leaves.items():
        ext = pki / f"{name}.ext"
        want = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        want += f"extendedKeyUsage={usage}\n" + (f"subjectAltName={','.join(alt)}\n" if alt else "")
        if (pki / f"{name}.crt").exists() and ext.exists() and ext.read_text() == want:
            continue
        ext.write_text(want)
        _openssl(
            *f"req -new -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr".split(),
            cwd=pki,
            extra=("-subj", subject),
        )
        serial = str(int.from_bytes(secrets.token_bytes(8), "big"))
        _openssl(
            *f"x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -days 825 -out {name}.crt".split(),
            cwd=pki,
            extra=("-set_serial", serial, "-extfile", ext.name),
        )
        (pki / f"{name}.csr").unlink()
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def apiserver_args(pki: Path) -> list[str]:
    """What the apiserver needs for a node: client certificates (CA), its CA-signed serving
    certificate, credentials for kubelet's API (logs, exec) and the Node authorizer."""
    return [
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--authorization-mode=Node",  # a list flag: added to the control plane's RBAC
        "--enable-admission-plugins=NodeRestriction",
    ]


def write_cert_kubeconfig(path: Path, server: str, pki: Path, name: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "cryptopipe", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}
        ],
        "users": [
            {
                "name": name,
                "user": {"client-certificate": str(pki / f"{name}.crt"), "client-key": str(pki / f"{name}.key")},
            }
        ],
        "contexts": [{"name": "cryptopipe", "context": {"cluster": "cryptopipe", "user": name}}],
        "current-context": "cryptopipe",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


# --- the node ----------------------------------------------------------------------------------------


class KubeNode:
    """Network, certificates, containerd, kubelet, kube-proxy and kube-scheduler for one node.

    Lifecycle: ``prepare_host()`` (record the host, the dummy interface, the PKI), then the caller
    starts the control plane with ``apiserver_args()`` on ``NODE_IP``, then ``start(kube)``.
    ``teardown()`` (stack/node.py's module function) undoes everything from the state files.
    """

    def __init__(self, work_dir: Path, *, bin_dir: Path | None = None, node_ip: str = NODE_IP) -> None:
        self.dir = Path(work_dir) / "node"
        self.bin_dir = Path(bin_dir) if bin_dir else node_bin()
        self.node_ip = node_ip
        self.node_name = NODE_NAME
        self.pki = self.dir / "pki"
        self.containerd_root = self.dir / "containerd" / "root"
        self.containerd_state = self.dir / "containerd" / "state"
        self.containerd_socket = self.dir / "containerd" / "containerd.sock"
        self.kubelet_root = self.dir / "kubelet"
        self.cni_conf_dir = self.dir / "cni" / "net.d"
        self.pod_logs = self.dir / "pod-logs"
        self.pause_image = PAUSE_IMAGE_DEFAULT
        self.processes: list[ManagedProcess] = []
        # called with each process as soon as it is started (KubeControlPlane.on_start's twin)
        self.on_start: Callable[[ManagedProcess], None] | None = None
        self.kubelet: ManagedProcess | None = None
        self.tools: dict[str, Path] = {}
        self.timings: dict[str, float] = {}

    # --- host -----------------------------------------------------------------------------------

    def prepare_host(self) -> None:
        require_root()
        self.tools = require_node_binaries(self.bin_dir)
        self.pause_image = (node_images() / "pause.ref").read_text().strip()
        self.dir.mkdir(parents=True, exist_ok=True)
        record = self.dir / HOST_RECORD
        # an earlier up whose down did not finish left its record: it holds the values from before
        # that up, which are the ones to restore (the current ones may be kubelet's)
        if not record.exists():
            _write_json(record, record_host())
        if DUMMY_LINK not in links():
            made = _run("ip", "link", "add", DUMMY_LINK, "type", "dummy", check=False)
            if made.returncode != 0:
                # a kernel without the dummy driver (this VM's): a bridge with no ports holds a
                # local address just as well
                log.info("no dummy driver, using a bridge", extra={"link": DUMMY_LINK, "error": made.stderr.strip()})
                _run("ip", "link", "add", DUMMY_LINK, "type", "bridge")
        if f"inet {self.node_ip}/32" not in _run("ip", "-o", "addr", "show", "dev", DUMMY_LINK).stdout:
            _run("ip", "addr", "add", f"{self.node_ip}/32", "dev", DUMMY_LINK)
        _run("ip", "link", "set", DUMMY_LINK, "up")
        make_pki(self.pki, node_ip=self.node_ip, node_name=self.node_name)

    def apiserver_args(self) -> list[str]:
        return apiserver_args(self.pki)

    # --- processes --------------------------------------------------------------------------------

    def start(self, kube: KubeControlPlane, *, timeout: float = 120) -> None:
        """kube-scheduler, containerd (+ the pause image), kubelet, kube-proxy; returns when the
        node is Ready. On failure the caller stops ``processes`` and runs ``teardown``."""
        began = time.monotonic()
        for name in ("kubelet", "kube-proxy", "kube-scheduler"):
            write_cert_kubeconfig(self.dir / f"{name}.kubeconfig", kube.server, self.pki, name)
        self._start_scheduler(timeout)
        self._write_cni_config()
        self._start_containerd(timeout)
        self._start_kubelet(timeout)
        self._start_kube_proxy(timeout)
        kubelet_began = self.timings["kubelet_started"]
        wait_for(
            lambda: node_ready(kube, self.node_name),
            timeout,
            f"node {self.node_name} Ready",
            interval=0.5,
            process=self.kubelet,
            retry_on=(RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired),
        )
        self.timings["kubelet_to_ready_s"] = round(time.monotonic() - kubelet_began, 1)
        self.timings["node_start_s"] = round(time.monotonic() - began, 1)
        log.info(
            "node ready", extra={"node": self.node_name, **{k: v for k, v in self.timings.items() if k.endswith("_s")}}
        )

    def _process(self, name: str, args: list[str]) -> ManagedProcess:
        proc = ManagedProcess(args, log_path=self.dir / f"{name}.log", name=name).start()
        self.processes.append(proc)
        if self.on_start is not None:
            self.on_start(proc)
        return proc

    def _start_scheduler(self, timeout: float) -> None:
        port = free_port()
        kubeconfig = self.dir / "kube-scheduler.kubeconfig"
        proc = self._process(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                "--profiling=false",
            ],
        )
        wait_for(
            lambda: _https_ok(f"https://{LOOPBACK}:{port}/healthz"),
            timeout,
            "kube-scheduler /healthz",
            interval=0.25,
            process=proc,
            retry_on=(OSError,),
        )

    def _write_cni_config(self) -> None:
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": "cryptopipe",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni" / "ipam"),  # not /var/lib/cni/networks
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                # a FORWARD policy of DROP (dockerd sets it) would otherwise cut the pods off
                {"type": "firewall", "backend": "iptables"},
            ],
        }
        (self.cni_conf_dir / "10-cryptopipe.conflist").write_text(json.dumps(conflist, indent=2))

    def _containerd_config(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""# written by cryptopipe dev cluster up --node (stack/node.py); containerd 1.6, config v2
version = 2
root = "{self.containerd_root}"
state = "{self.containerd_state}"
oom_score = 0

[grpc]
  address = "{self.containerd_socket}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.dir / "containerd" / "opt"}"

[{cri}]
  sandbox_image = "{self.pause_image}"
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails
  # ("can't get final child's PID from pipe")
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{self.containerd_state / "runc"}"

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{self.cni_conf_dir}"
"""

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run(
            "ctr",
            "--address",
            str(self.containerd_socket),
            "--namespace",
            "k8s.io",
            *args,
            check=check,
            timeout=timeout,
        )

    def _start_containerd(self, timeout: float) -> None:
        for d in (self.containerd_root, self.containerd_state):
            d.mkdir(parents=True, exist_ok=True)
        config = self.dir / "containerd.toml"
        config.write_text(self._containerd_config())
        proc = self._process("containerd", [str(self.tools["containerd"]), "--config", str(config)])
        wait_for(
            lambda: self.containerd_socket.exists() and self.ctr("version", check=False, timeout=10).returncode == 0,
            timeout,
            "containerd",
            interval=0.2,
            process=proc,
            retry_on=(subprocess.TimeoutExpired,),
        )
        began = time.monotonic()
        tarball = node_images() / f"pause-{self.pause_image.rsplit(':', 1)[1]}.tar"
        self.ctr("images", "import", str(tarball))
        self.timings["pause_import_s"] = round(time.monotonic() - began, 2)

    def _kubelet_config(self, port: int, healthz_port: int) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.node_ip,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": LOOPBACK,
            "healthzPort": healthz_port,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",  # cgroup v1 here, and containerd's runc uses cgroupfs
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "clusterDNS": [CLUSTER_DNS_IP],
            "clusterDomain": "cluster.local",
            "podLogsDir": str(self.pod_logs),
            "volumePluginDir": str(self.dir / "volume-plugins"),  # not /usr/libexec/kubernetes
            "resolvConf": "/etc/resolv.conf",
            # images are imported, never pulled: a pruned image could not come back
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "serializeImagePulls": False,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
        }

    def _start_kubelet(self, timeout: float) -> None:
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        self.pod_logs.mkdir(parents=True, exist_ok=True)
        port, healthz = free_port(self.node_ip), free_port()
        config = self.dir / "kubelet-config.json"
        _write_json(config, self._kubelet_config(port, healthz))
        self.timings["kubelet_started"] = time.monotonic()
        proc = self.kubelet = self._process(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={self.dir / 'kubelet.kubeconfig'}",
                f"--root-dir={self.kubelet_root}",
                f"--cert-dir={self.kubelet_root / 'pki'}",  # default /var/lib/kubelet/pki, not under --root-dir
                f"--hostname-override={self.node_name}",
                f"--node-ip={self.node_ip}",
                "--v=1",
            ],
        )
        wait_for(
            lambda: _http_ok(f"http://{LOOPBACK}:{healthz}/healthz"),
            timeout,
            "kubelet /healthz",
            interval=0.25,
            process=proc,
            retry_on=(OSError,),
        )

    def _start_kube_proxy(self, timeout: float) -> None:
        healthz, metrics = free_port(), free_port()
        config = self.dir / "kube-proxy-config.json"
        _write_json(
            config,
            {
                "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                "kind": "KubeProxyConfiguration",
                "clientConnection": {"kubeconfig": str(self.dir / "kube-proxy.kubeconfig")},
                "hostnameOverride": self.node_name,
                "mode": "iptables",
                "clusterCIDR": CLUSTER_CIDR,
                "healthzBindAddress": f"{LOOPBACK}:{healthz}",
                "metricsBindAddress": f"{LOOPBACK}:{metrics}",
                # NodePorts only on the node's own address; no route_localnet for 127.0.0.1 NodePorts
                "nodePortAddresses": [f"{self.node_ip}/32"],
                "iptables": {"localhostNodePorts": False},
                # leave the host's conntrack table size and timeouts alone
                "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            },
        )
        proc = self._process("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={config}", "--v=1"])
        wait_for(
            lambda: _http_ok(f"http://{LOOPBACK}:{healthz}/livez"),
            timeout,
            "kube-proxy /livez",
            interval=0.25,
            process=proc,
            retry_on=(OSError,),
        )


HOST_RECORD = "host-before.json"


def node_ready(kube: KubeControlPlane, name: str) -> bool:
    got = kube.kubectl("get", "node", name, "-o", "json", check=False, timeout=15)
    if got.returncode != 0:
        return False
    conditions = json.loads(got.stdout).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# --- teardown ----------------------------------------------------------------------------------------


def drain(kubectl: Callable[..., subprocess.CompletedProcess[str]], node_dir: Path, timeout: float = 60) -> None:
    """Delete every pod on the node while kubelet still runs, so it stops each sandbox properly
    (CNI DEL: veth, IPAM, per-pod iptables chains); wait until containerd runs no task."""
    kubectl(
        "delete",
        "pods",
        "--all-namespaces",
        "--force",
        "--grace-period=0",
        "--wait=false",
        f"--field-selector=spec.nodeName={NODE_NAME}",
        check=False,
        timeout=60,
    )
    sock = node_dir / "containerd" / "containerd.sock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = _run("ctr", "--address", str(sock), "-n", "k8s.io", "tasks", "ls", "-q", check=False, timeout=15)
        if tasks.returncode != 0 or not tasks.stdout.strip():
            return
        time.sleep(0.5)


def kill_containers(node_dir: Path) -> list[str]:
    """Containers the kubelet did not stop: killed and deleted through containerd (still running)."""
    sock = node_dir / "containerd" / "containerd.sock"

    def ctr(*args: str) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(sock), "-n", "k8s.io", *args, check=False, timeout=30)

    left = ctr("tasks", "ls", "-q").stdout.split()
    for task in left:
        ctr("tasks", "kill", "-s", "SIGKILL", task)
    for task in left:
        for _ in range(20):
            if ctr("tasks", "delete", task).returncode == 0:
                break
            time.sleep(0.25)
    for container in ctr("containers", "ls", "-q").stdout.split():
        ctr("containers", "delete", container)
    return left


def teardown(node_dir: Path, kube_proxy: Path | None, *, say: Callable[[str], None] = print) -> list[str]:
    """Undo what ``up --node`` did to the host, from ``node_dir/host-before.json``; call it once the
    processes are stopped. Best effort: every step runs; returns what could not be undone."""
    record_path = node_dir / HOST_RECORD
    try:
        before = json.loads(record_path.read_text())
    except FileNotFoundError:
        return []
    problems: list[str] = []

    def step(what: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - every step runs; the caller reports what failed
            problems.append(f"{what}: {exc}")

    step("leftover processes", lambda: _kill_leftovers(node_dir, before))
    if kube_proxy is not None and kube_proxy.exists():
        step("kube-proxy --cleanup", lambda: _kube_proxy_cleanup(kube_proxy, node_dir))
    for family in IPTABLES:
        step(f"{family} chains", lambda f=family: _remove_chains(f, before["iptables"].get(f, {})))
    step("nft tables", lambda: _remove_nft_tables(before))
    step("mounts", lambda: _unmount_under([node_dir.resolve(), *_new_netns(before)]))
    step("netns", lambda: _remove_netns(before))
    step("cgroups", lambda: _remove_cgroups(before))
    step("links", lambda: _remove_links(before))
    step("stale files", lambda: _remove_stale_files(node_dir))
    step("dirs", lambda: _remove_dirs(before, node_dir))
    step("sysctls", lambda: _restore_sysctls(before["sysctls"]))
    for p in problems:
        say(f"host restore: {p}")
    if not problems:
        record_path.unlink()
        say("host restored (sysctls, iptables, mounts, cgroups, links)")
    return problems


def _kill_leftovers(node_dir: Path, before: dict[str, Any]) -> None:
    """After a crash (containerd or kubelet killed, not stopped): the pods' processes, still in the
    kubepods cgroups, and the runc shims of this node's containerd, which outlive it by design."""
    import signal

    victims: set[int] = set()
    for top in CGROUP_ROOT.glob("*/kubepods"):
        if str(top) in before["cgroups"]:
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                victims.update(int(pid) for pid in procs.read_text().split())
    socket = str(node_dir.resolve() / "containerd" / "containerd.sock")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if cmdline and b"containerd-shim" in cmdline[0] and socket.encode() in cmdline:
                victims.add(int(pid))
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while victims and time.monotonic() < deadline:
        victims = {pid for pid in victims if os.path.exists(f"/proc/{pid}")}
        time.sleep(0.1)


def _kube_proxy_cleanup(kube_proxy: Path, node_dir: Path) -> None:
    with open(node_dir / "kube-proxy-cleanup.log", "ab") as logf:
        # exits 1 when some mode's leftovers could not be read (e.g. no ipvs module): not an error here
        subprocess.run(
            [str(kube_proxy), "--cleanup", "--v=1"], stdout=logf, stderr=subprocess.STDOUT, timeout=60, check=False
        )


def _iptables_rules(family: str, table: str) -> list[str]:
    out = _run(IPTABLES[family][1], "-t", table, check=False).stdout
    return [line for line in out.splitlines() if line.startswith("-A ")]


def _remove_chains(family: str, before: dict[str, list[str]]) -> None:
    binary = IPTABLES[family][0]
    now = iptables_chains(family)
    for table, chains in now.items():
        ours = [c for c in chains if c.startswith(CHAIN_PREFIXES) and c not in before.get(table, [])]
        if not ours:
            continue
        # jumps to them from chains that stay (FORWARD -> CNI-FORWARD, INPUT -> KUBE-FIREWALL, ...)
        for rule in _iptables_rules(family, table):
            parts = shlex.split(rule)
            chain = parts[1]
            target = parts[parts.index("-j") + 1] if "-j" in parts else ""
            if chain not in ours and target in ours:
                _run(binary, "-w", "-t", table, "-D", *parts[1:], check=False)
        for chain in ours:
            _run(binary, "-w", "-t", table, "-F", chain, check=False)
        for chain in ours:
            _run(binary, "-w", "-t", table, "-X", chain, check=False)
        left = [c for c in iptables_chains(family).get(table, []) if c in ours]
        if left:
            raise RuntimeError(f"{binary} -t {table}: chains left: {left}")


def _remove_nft_tables(before: dict[str, Any]) -> None:
    """iptables-nft creates a table on first use; remove the ones that did not exist before and are
    now empty (no rules, every policy ACCEPT), so the ruleset is exactly as before."""
    old = before.get("nft_tables")
    now = nft_tables()
    if old is None or now is None:
        return
    for entry in now:
        if entry in old:
            continue
        family, table = entry.split()
        if family not in ("ip", "ip6") or table not in TABLES:
            continue  # not iptables-nft's: kube-proxy's nftables mode is not used here
        fam = "ipv4" if family == "ip" else "ipv6"
        save = _run(IPTABLES[fam][1], "-t", table, check=False).stdout
        policies = [line.split()[1] for line in save.splitlines() if line.startswith(":")]
        if _iptables_rules(fam, table) or any(p not in ("ACCEPT", "-") for p in policies):
            continue  # someone else's rules now (e.g. a dockerd started meanwhile): theirs to keep
        _run("nft", "delete", "table", family, table)


def _mounts() -> list[str]:
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        points.append(point)
    return points


def _unmount_under(roots: Iterable[Path]) -> None:
    roots = [str(r) for r in roots]
    for _ in range(5):  # a bind mount of a dir onto itself shows up more than once
        targets = sorted(
            {p for p in _mounts() if any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)},
            key=len,
            reverse=True,
        )
        if not targets:
            return
        for point in targets:
            if _run("umount", point, check=False).returncode != 0:
                _run("umount", "-l", point, check=False)
    left = [p for p in _mounts() if any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)]
    if left:
        raise RuntimeError(f"still mounted: {left}")


def _new_netns(before: dict[str, Any]) -> list[Path]:
    if not os.path.isdir("/run/netns"):
        return []
    return [
        Path("/run/netns", n) for n in os.listdir("/run/netns") if n not in before["netns"] and n.startswith("cni-")
    ]


def _remove_netns(before: dict[str, Any]) -> None:
    for path in _new_netns(before):
        path.unlink(missing_ok=True)


def _remove_cgroups(before: dict[str, Any]) -> None:
    left = []
    for top in CGROUP_ROOT.glob("*/kubepods"):
        if str(top) in before["cgroups"] or top.is_symlink():
            continue
        # deepest first: a cgroup can only be removed once it has no children (and no tasks)
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in [*dirs, top]:
            try:
                d.rmdir()
            except OSError as exc:
                left.append(f"{d}: {exc.strerror}")
    if left:
        raise RuntimeError("; ".join(left[:5]))


def _remove_links(before: dict[str, Any]) -> None:
    existed = set(before["links"])
    # veths of pods whose sandbox was not stopped properly are still enslaved to the bridge
    if BRIDGE in links():
        out = _run("ip", "-o", "link", "show", "master", BRIDGE, check=False).stdout
        for m in re.finditer(r"^\d+: ([^:@]+)", out, re.M):
            if m.group(1) not in existed:
                _run("ip", "link", "del", m.group(1), check=False)
    for name in (BRIDGE, DUMMY_LINK):
        if name in links() and name not in existed:
            _run("ip", "link", "del", name)


def _remove_stale_files(node_dir: Path) -> None:
    """kubelet's device-plugin socket (/var/lib/kubelet/device-plugins, outside --root-dir), and what
    only a crash leaves (no shim exited cleanly, no CNI DEL ran): the shims' sockets in
    /run/containerd/s (each task's ``address`` file in the state dir names its own) and libcni's
    cached results for this node's network (``cryptopipe-<id>-eth0``, ``cni-loopback-<id>-lo``)."""
    tasks = node_dir.resolve() / "containerd" / "state" / "io.containerd.runtime.v2.task"
    for address in tasks.glob("*/*/address"):
        with contextlib.suppress(OSError):
            sock = address.read_text().strip().removeprefix("unix://")
            if sock.startswith("/run/containerd/s/"):
                Path(sock).unlink(missing_ok=True)
    # called once kubelet has stopped: the device manager's socket is its leftover (whatever its
    # file type reads as while kubelet's last writes settle: never a directory of ours)
    if KUBELET_DEVICE_PLUGIN_SOCKET.exists() and not KUBELET_DEVICE_PLUGIN_SOCKET.is_dir():
        KUBELET_DEVICE_PLUGIN_SOCKET.unlink(missing_ok=True)
    results = Path("/var/lib/cni/results")
    for cached in results.glob("cryptopipe-*-eth0"):
        sandbox = cached.name.removeprefix("cryptopipe-").removesuffix("-eth0")
        (results / f"cni-loopback-{sandbox}-lo").unlink(missing_ok=True)
        cached.unlink(missing_ok=True)


def _remove_dirs(before: dict[str, Any], node_dir: Path) -> None:
    """Of the host directories that did not exist before: remove kubelet's links into the work dir
    (/var/log/containers), then every directory left empty, deepest first. Anything else in them
    is someone else's (another containerd's shim sockets in /run/containerd/s) and stays."""
    ours = str(node_dir.resolve()) + "/"
    for d, existed in before["dirs"].items():
        if existed or not os.path.isdir(d):
            continue
        for root, dirnames, filenames in os.walk(d, topdown=False):
            for name in filenames + dirnames:
                path = os.path.join(root, name)
                if os.path.islink(path) and os.readlink(path).startswith(ours):
                    os.unlink(path)
            with contextlib.suppress(OSError):
                os.rmdir(root)  # only when empty


def _restore_sysctls(values: dict[str, str | None]) -> None:
    failed = []
    for name, value in values.items():  # ip_forward first: writing it rewrites the others
        if value is None or read_sysctl(name) == value:
            continue
        try:
            write_sysctl(name, value)
        except OSError as exc:
            failed.append(f"{name}={value}: {exc.strerror}")
    if failed:
        raise RuntimeError("; ".join(failed))


# --- helpers -----------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def _http_ok(url: str) -> bool:
    import urllib.request

    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=3) as resp:
        return resp.status == 200
    return False


def _https_ok(url: str) -> bool:
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
            return resp.status == 200
    except urllib.error.HTTPError:
        return False


__all__ = ["KubeNode", "NeedsRoot", "node_bin", "record_host", "require_root", "teardown"]
