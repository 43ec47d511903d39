#!/usr/bin/env python3
"""A real single-node Apache Kafka broker (KRaft, broker+controller) on the local JVM, no Docker needed.

fetch: jars of docker/kafka/pom.xml -> .kafka-cache/jars (or $GATEKEEPER_KAFKA_CACHE), once.
start: start a broker in the background, print its bootstrap address.  status.  stop [--keep].
Python: ``with LocalKafka() as kafka: use(kafka.bootstrap)``; ``stop_process()`` and ``restart()``
take the broker down and bring it back on the same ports with the same cluster id and data.

Besides PLAINTEXT the broker listens with SASL_PLAINTEXT + SCRAM-SHA-512 on ``sasl_bootstrap``, for the user
``SCRAM_USER`` / ``SCRAM_PASSWORD`` (test credentials, created at format time), and with SASL_SSL (the same user,
over TLS) on ``tls_bootstrap``: a self-signed certificate for 127.0.0.1 made by the JDK's keytool at start, whose
PEM ``ca_file`` clients trust; and with SSL requiring a client certificate (mutual TLS, no SASL) on
``mtls_bootstrap``: the client's key pair is ``client_keystore`` (PKCS12, password ``KEYSTORE_PASSWORD``). So the
SASL and TLS settings of the clients can be tested against a real broker.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from subprocess import DEVNULL, STDOUT, Popen
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_DIR = REPO_ROOT / "docker" / "kafka"
CACHE_ROOT = REPO_ROOT / ".kafka-cache"
DEFAULT_STATE = CACHE_ROOT / "broker.json"
MARKER = ".complete.json"  # written into the jars dir only after a successful, complete copy
SCRAM_USER = "gatekeeper-test"
SCRAM_PASSWORD = "local-broker-only-2f9c"  # a test broker's credential, not a secret
KEYSTORE_PASSWORD = "local-broker-only-tls"  # the test broker's own key store, not a secret
SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport},SASL_PLAINTEXT://127.0.0.1:{sport},\
  SASL_SSL://127.0.0.1:{tport},SSL://127.0.0.1:{mport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sport},SASL_SSL://127.0.0.1:{tport},\
  SSL://127.0.0.1:{mport}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,\
  SASL_SSL:SASL_SSL,SSL:SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=\
  org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
  org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location={keystore}
listener.name.sasl_ssl.ssl.keystore.password={keystore_password}
listener.name.sasl_ssl.ssl.key.password={keystore_password}
listener.name.ssl.ssl.keystore.type=PKCS12
listener.name.ssl.ssl.keystore.location={keystore}
listener.name.ssl.ssl.keystore.password={keystore_password}
listener.name.ssl.ssl.key.password={keystore_password}
listener.name.ssl.ssl.client.auth=required
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location={client_cert}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=true
log.dirs={data}
"""


class LocalKafkaError(RuntimeError):
    """A failure with a message meant for humans (what failed, where, why)."""


def jars_dir() -> Path:
    return Path(os.environ.get("GATEKEEPER_KAFKA_CACHE") or CACHE_ROOT / "jars")


def _tool(name: str, hint: str) -> str:
    search = f"{os.environ.get('JAVA_HOME', '.')}/bin{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which(name, path=search)
    if found is None:
        raise LocalKafkaError(f"'{name}' was not found on PATH (or in $JAVA_HOME/bin); it is needed {hint}.")
    return found


def _pom_digest() -> str:
    return hashlib.sha256((KAFKA_DIR / "pom.xml").read_bytes()).hexdigest()


def cached_jars(dest: Path) -> bool:
    """True when ``dest`` holds a complete copy made from the current pom.xml."""
    try:
        marker = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("pom_sha256") == _pom_digest() and all((dest / j).is_file() for j in marker["jars"])


def fetch(dest: Path | None = None) -> Path:
    """Copy the broker's runtime jars into ``dest`` with Maven unless a complete copy is already there."""
    dest = dest or jars_dir()
    if cached_jars(dest):
        return dest
    pom = KAFKA_DIR / "pom.xml"
    mvn = _tool("mvn", f"to fetch the Kafka jars listed in {pom} into {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{dest.name}.partial-", dir=dest.parent))
    cmd = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(pom), "dependency:copy-dependencies"]
    cmd += [f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    jars = sorted(p.name for p in tmp.glob("*.jar"))
    if done.returncode != 0 or not any(j.startswith("kafka_") for j in jars):
        shutil.rmtree(tmp, ignore_errors=True)
        raise LocalKafkaError(
            f"fetching the Kafka jars into {dest} failed: `{' '.join(cmd)}` exited {done.returncode}; "
            f"Maven said:\n{_tail(done.stdout + done.stderr, 30)}"
        )
    (tmp / MARKER).write_text(json.dumps({"pom_sha256": _pom_digest(), "jars": jars}, indent=1))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _tail(text: str, lines: int) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def api_versions_ok(port: int, timeout: float = 2.0) -> bool:
    """True when a Kafka broker on 127.0.0.1:port answers an ApiVersions v0 request without error."""
    body = struct.pack(">hhih", 18, 0, 7, 5) + b"local"  # api key, version, correlation id, client id
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            head = sock.recv(10, socket.MSG_WAITALL)  # size(4) correlation id(4) error code(2)
    except OSError:
        return False
    return len(head) == 10 and struct.unpack(">iih", head)[1:] == (7, 0)


def _alive(pid: int) -> bool:
    """True when ``pid`` is a live (non-zombie) Kafka broker process (Linux /proc)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and status != "Z"


class LocalKafka:
    """One KRaft node (process.roles=broker,controller) on free 127.0.0.1 ports: PLAINTEXT, the controller's,
    SASL_PLAINTEXT (SCRAM-SHA-512, user ``scram_user``), SASL_SSL (the same, over TLS; trust ``ca_file``) and SSL
    with a client certificate (``client_keystore``)."""

    scram_user, scram_password, keystore_password = SCRAM_USER, SCRAM_PASSWORD, KEYSTORE_PASSWORD

    def __init__(self, jars: Path | None = None, *, keep: bool = False, timeout: float = 90.0) -> None:
        self.jars, self.keep, self.timeout = jars or jars_dir(), keep, timeout
        self.port = self.controller_port = self.sasl_port = self.tls_port = self.mtls_port = 0
        self.pid: int | None = None
        self.run_dir = Path()
        self._proc: Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL_PLAINTEXT (SCRAM-SHA-512) listener: user ``SCRAM_USER``, password ``SCRAM_PASSWORD``."""
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def tls_bootstrap(self) -> str:
        """The SASL_SSL (SCRAM-SHA-512 over TLS) listener: the same user; its certificate is ``ca_file``."""
        return f"127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        """The PEM certificate the SASL_SSL listener presents (self-signed, for 127.0.0.1): trust it."""
        return self.run_dir / "broker-cert.pem"

    @property
    def mtls_bootstrap(self) -> str:
        """The SSL listener requiring a client certificate: ``client_keystore``'s (no SASL)."""
        return f"127.0.0.1:{self.mtls_port}"

    @property
    def client_keystore(self) -> Path:
        """The client's key pair for ``mtls_bootstrap`` (PKCS12, password ``KEYSTORE_PASSWORD``), its certificate
        the one the listener trusts."""
        return self.run_dir / "client.p12"

    @property
    def running(self) -> bool:
        return self.pid is not None and _alive(self.pid)

    def start(self) -> str:
        """Fetch jars if needed, format a fresh log dir and start the broker; returns the bootstrap."""
        java = _tool("java", "to run the local Kafka broker (install a JDK >= 11 or set JAVA_HOME)")
        fetch(self.jars)
        (CACHE_ROOT / "run").mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix="broker-", dir=CACHE_ROOT / "run"))
        socks = [socket.socket() for _ in range(5)]  # all held while choosing: distinct ports
        try:
            for sock in socks:
                sock.bind(("127.0.0.1", 0))
            ports = [s.getsockname()[1] for s in socks]
        finally:
            for sock in socks:
                sock.close()
        self.port, self.controller_port, self.sasl_port, self.tls_port, self.mtls_port = ports
        keystore = self._key_pair(java, "broker", "CN=127.0.0.1", self.ca_file, "SAN=IP:127.0.0.1,DNS:localhost")
        client_cert = self.run_dir / "client-cert.pem"
        self._key_pair(java, "client", "CN=gatekeeper-test-client", client_cert)
        data = self.run_dir / "data"
        props = SERVER_PROPERTIES.format(
            port=self.port, cport=self.controller_port, sport=self.sasl_port, tport=self.tls_port,
            mport=self.mtls_port, data=data, keystore=keystore, keystore_password=KEYSTORE_PASSWORD,
            client_cert=client_cert,
        )  # fmt: skip
        (self.run_dir / "server.properties").write_text(props)
        cluster_id = self._storage_tool(java, "random-uuid").strip()
        scram = f"SCRAM-SHA-512=[name={SCRAM_USER},password={SCRAM_PASSWORD}]"
        config = str(self.run_dir / "server.properties")
        self._storage_tool(java, "format", "-t", cluster_id, "-c", config, "--add-scram", scram)
        self._launch(java)
        return self.bootstrap

    def restart(self) -> None:
        """Start the stopped broker again on the same ports with the same cluster id and data."""
        if not self.port:
            raise LocalKafkaError("restart() needs a broker that was start()ed before")
        if not self.running:
            self._launch(_tool("java", "to run the local Kafka broker"))

    def stop_process(self, grace: float = 20.0) -> None:
        """SIGTERM the broker's process group, SIGKILL it after ``grace`` s; keeps ports and data."""
        pid, self.pid = self.pid, None
        if pid is None or not _alive(pid):
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if (self._proc is not None and self._proc.poll() is not None) or not _alive(pid):
                    return
                time.sleep(0.1)
        raise LocalKafkaError(f"the Kafka broker (pid {pid}) survived SIGKILL")

    def stop(self) -> None:
        """Stop the broker and remove its run dir (unless ``keep``)."""
        self.stop_process()
        if self.port and not self.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _key_pair(self, java: str, name: str, dname: str, pem: Path, *ext: str) -> Path:
        """A key pair and self-signed certificate in ``<name>.p12`` (PKCS12) and the certificate as PEM at
        ``pem`` (the broker's: what clients trust; the client's: what the broker trusts), made by the keytool of
        the JDK that runs the broker. Returns the PKCS12 file."""
        beside = Path(java).parent / "keytool"
        keytool = str(beside) if beside.is_file() else _tool("keytool", "to make the local broker's certificates")
        keystore = self.run_dir / f"{name}.p12"
        store = ["-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", KEYSTORE_PASSWORD]
        extensions = [arg for e in ext for arg in ("-ext", e)]
        steps = [
            ["-genkeypair", "-alias", name, "-keyalg", "RSA", "-keysize", "2048", "-validity", "365",
             "-dname", dname, *extensions, "-keypass", KEYSTORE_PASSWORD],
            ["-exportcert", "-rfc", "-alias", name, "-file", str(pem)],
        ]  # fmt: skip
        for step in steps:
            self._run([keytool, *step, *store], f"keytool {step[0]} ({name})")
        return keystore

    def _jvm(self, java: str) -> list[str]:
        log4j = f"-Dlog4j.configuration=file:{KAFKA_DIR / 'log4j.properties'}"
        return [java, "-cp", f"{self.jars}/*", log4j, f"-Dkafka.logs.dir={self.run_dir / 'logs'}"]

    def _storage_tool(self, java: str, *args: str) -> str:
        return self._run([*self._jvm(java), "kafka.tools.StorageTool", *args], f"kafka-storage {' '.join(args)}")

    def _run(self, cmd: list[str], label: str) -> str:
        """A set-up command's stdout; a LocalKafkaError with its output's tail when it fails."""
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LocalKafkaError(
                f"`{label}` failed (exit {done.returncode}) for the broker in {self.run_dir}:\n"
                f"{_tail(done.stdout + done.stderr, 20)}"
            )
        return done.stdout

    def _launch(self, java: str) -> None:
        config = str(self.run_dir / "server.properties")
        cmd = [*self._jvm(java), "-Xms256m", "-Xmx512m", "kafka.Kafka", config]
        (self.run_dir / "logs").mkdir(exist_ok=True)
        with (self.run_dir / "logs" / "stdout.log").open("ab") as out:
            self._proc = Popen(cmd, stdin=DEVNULL, stdout=out, stderr=STDOUT, start_new_session=True)
        self.pid = self._proc.pid
        deadline = time.monotonic() + self.timeout
        while not api_versions_ok(self.port):
            code = self._proc.poll()
            if code is not None or time.monotonic() > deadline:
                why = f"exited with code {code}" if code is not None else f"no answer in {self.timeout:g} s"
                self.stop_process()
                raise LocalKafkaError(
                    f"the Kafka broker on {self.bootstrap} did not come up ({why}){self._cause()}; "
                    f"run dir {self.run_dir}\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def _cause(self) -> str:
        log = self.run_dir / "logs" / "broker.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        causes = [line for line in text.splitlines() if line.startswith("Caused by: ") or "] ERROR " in line]
        return f": {causes[-1].removeprefix('Caused by: ')}" if causes else ""

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the broker's logs (WARN+ log4j output, then JVM stdout/stderr)."""
        parts = []
        for path in (self.run_dir / "logs" / "broker.log", self.run_dir / "logs" / "stdout.log"):
            text = path.read_text(errors="replace") if path.is_file() else ""
            parts.append(f"  --- {path} ---\n{_tail(text, lines) or '    (empty)'}")
        return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state file (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=90.0, help="start: seconds to wait for the broker")
    parser.add_argument("--keep", action="store_true", help="stop: keep the run dir (data and logs)")
    parser.add_argument("command", choices=["fetch", "start", "stop", "status"], help="status: 3 if down")
    args = parser.parse_args(argv)
    state: dict[str, Any] | None = json.loads(args.state.read_text()) if args.state.is_file() else None
    began = time.monotonic()
    try:
        if args.command == "fetch":
            print(f"Kafka jars ready in {fetch()} ({time.monotonic() - began:.1f} s)")
        elif args.command == "start":
            if state and _alive(state["pid"]):
                where = f"127.0.0.1:{state['port']} (pid {state['pid']}, state file {args.state})"
                raise LocalKafkaError(f"a broker is already running on {where}; stop it first")
            kafka = LocalKafka(timeout=args.timeout)
            kafka.start()
            args.state.parent.mkdir(parents=True, exist_ok=True)
            state = {"pid": kafka.pid, "port": kafka.port, "controller_port": kafka.controller_port}
            state["mtls_port"], state["client_keystore"] = kafka.mtls_port, str(kafka.client_keystore)
            state["sasl_port"], state["tls_port"], state["ca_file"] = (
                kafka.sasl_port,
                kafka.tls_port,
                str(kafka.ca_file),
            )
            state["run_dir"] = str(kafka.run_dir)
            args.state.write_text(json.dumps(state, indent=1))
            print(f"broker up in {time.monotonic() - began:.1f} s, run dir {kafka.run_dir}", file=sys.stderr)
            print(kafka.bootstrap)
        elif args.command == "stop" and state:
            kafka = LocalKafka(keep=args.keep)  # stop() only needs the pid, the port and the run dir
            kafka.pid, kafka.port, kafka.run_dir = state["pid"], state["port"], Path(state["run_dir"])
            kafka.stop()
            args.state.unlink()
            print(f"stopped the broker on {kafka.bootstrap}")
        elif args.command == "stop":
            print(f"no broker state in {args.state}; nothing to stop")
        elif state and _alive(state["pid"]):
            print(f"running: 127.0.0.1:{state['port']} (pid {state['pid']}, run dir {state['run_dir']})")
        else:
            print("not running")
            return 3
    except LocalKafkaError as exc:
        print(f"local_kafka {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
