"""SSH connections with paramiko: verified host keys, timeouts, jump hosts, reuse.

A `Connection` is made without I/O, opens on first use, runs commands and
closes (also as a context manager). `Connections` hands out one connection per
host for a whole command, and shares jump-host connections between hosts.
Failures to reach a host become `Unreachable` with a reason a person and a
scheduler can both act on: timeout, refused, auth, host-key, dns or error.
"""

from __future__ import annotations

import logging
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import paramiko

from fleetmend import hostkeys
from fleetmend.transport.target import Target

# paramiko logs every failed handshake with a traceback from its own thread;
# failures reach the user as `Unreachable` values instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


class Reason(StrEnum):
    TIMEOUT = "timeout"
    REFUSED = "refused"
    AUTH = "auth"
    HOST_KEY = "host-key"
    DNS = "dns"
    ERROR = "error"


class Unreachable(Exception):
    """A host could not be reached or did not answer in time."""

    def __init__(self, host: str, reason: Reason, detail: str) -> None:
        super().__init__(f"{host}: {reason.value}: {detail}")
        self.host = host
        self.reason = reason
        self.detail = detail


def fingerprint(key: paramiko.PKey) -> str:
    return hostkeys.fingerprint(f"{key.get_name()} {key.get_base64()}")


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    exit_code: int
    seconds: float


class KnownHosts:
    """Host keys to trust: the user's known_hosts files plus fleetmend's own.

    Unknown keys are refused, naming host and fingerprint, unless `accept_new`
    is set: then they are written to fleetmend's own file (trust on first use,
    like OpenSSH's accept-new). A changed key is always refused.
    """

    def __init__(self, own: Path, user_files: list[Path], *, accept_new: bool = False) -> None:
        self.own = own
        self.accept_new = accept_new
        self.keys = paramiko.HostKeys()
        self.user_files = [f for f in user_files if f.is_file()]
        self._lock = threading.Lock()
        for path in [*user_files, own]:
            if path.is_file():
                self.keys.load(str(path))
        self.accepted: list[tuple[str, str]] = []

    def load_extra(self, files: tuple[str, ...]) -> None:
        with self._lock:
            for name in files:
                if Path(name).is_file():
                    self.keys.load(name)

    def verify(self, target: Target, key: paramiko.PKey) -> None:
        name = target.known_hosts_name
        with self._lock:
            known = self.keys.lookup(name)
            if known is not None and key.get_name() in known:
                if known[key.get_name()] == key:
                    return
                raise Unreachable(
                    target.name,
                    Reason.HOST_KEY,
                    f"host key of {name} CHANGED: known {fingerprint(known[key.get_name()])}, "
                    f"offered {fingerprint(key)}; if the host was rebuilt, remove the old key "
                    f"(ssh-keygen -R '{name}') or let its provider record the new one",
                )
            if known is not None:  # known with other key types only
                types = ", ".join(known.keys())
                raise Unreachable(
                    target.name,
                    Reason.HOST_KEY,
                    f"{name} offered a {key.get_name()} key {fingerprint(key)} but is known "
                    f"only with {types}",
                )
            if not self.accept_new:
                raise Unreachable(
                    target.name,
                    Reason.HOST_KEY,
                    f"unknown host key for {name}: {key.get_name()} {fingerprint(key)}; "
                    "verify it and add it to known_hosts, or run with --accept-new to trust it "
                    "on first use",
                )
            self.keys.add(name, key.get_name(), key)
            self.own.parent.mkdir(parents=True, exist_ok=True)
            with self.own.open("a") as handle:
                handle.write(f"{name} {key.get_name()} {key.get_base64()}\n")
            self.accepted.append((name, fingerprint(key)))


def own_known_hosts(state_dir: Path) -> Path:
    """fleetmend's own known_hosts: keys recorded from providers (rebuilds, the lab)."""
    return state_dir / "known_hosts"


def record_host_key(path: Path, name: str, key_line: str | None) -> None:
    """Make `key_line` the only key known for `name` in `path` (a provider's new key);
    with None, forget every key recorded for `name`."""
    from fleetmend.fsutil import write_atomic

    if key_line is None and not path.is_file():
        return
    kept = []
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line.split(" ", 1)[0] != name]
    new = [] if key_line is None else [f"{name} {key_line}"]
    write_atomic(path, "".join(f"{line}\n" for line in [*kept, *new]))


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    """TCP connect, SSH banner, key exchange and authentication, each."""
    command: float = 60.0


# unanswered keepalives before an OpenSSH client gives a silent host up
ALIVE_COUNT = 3


def _prefer_gcm(transport: paramiko.Transport) -> None:
    """AES-GCM first when the server has it: paramiko checks an HMAC tag in Python,
    packet by packet, and a GCM tag in C (about a fifth less CPU relaying a re-seed here)."""
    options = transport.get_security_options()
    gcm = tuple(c for c in options.ciphers if c.endswith("-gcm@openssh.com"))
    options.ciphers = gcm + tuple(c for c in options.ciphers if c not in gcm)


class Connection:
    """One SSH session to one host: opened lazily, reused for every command."""

    def __init__(
        self,
        target: Target,
        known: KnownHosts,
        timeouts: Timeouts,
        jump: Connection | None = None,
    ) -> None:
        self.target = target
        self.known = known
        self.timeouts = timeouts
        self.jump = jump
        self._transport: paramiko.Transport | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def open(self) -> paramiko.Transport:
        with self._lock:
            if self._transport is None or not self._transport.is_active():
                self._transport = self._connect()
            return self._transport

    def _socket(self) -> socket.socket | paramiko.Channel:
        t = self.target
        if self.jump is not None:
            hop = self.jump.open()
            try:
                return hop.open_channel(
                    "direct-tcpip",
                    (t.address, t.port),
                    ("127.0.0.1", 0),
                    timeout=self.timeouts.connect,
                )
            except (paramiko.SSHException, OSError) as exc:
                raise Unreachable(
                    t.name,
                    Reason.ERROR,
                    f"jump host {self.jump.target.name} could not reach it: {exc}",
                ) from None
        try:
            return socket.create_connection((t.address, t.port), timeout=self.timeouts.connect)
        except TimeoutError:
            raise Unreachable(
                t.name,
                Reason.TIMEOUT,
                f"no TCP connection to {t.address}:{t.port} within {self.timeouts.connect:g}s",
            ) from None
        except ConnectionRefusedError:
            raise Unreachable(
                t.name, Reason.REFUSED, f"{t.address}:{t.port} refused the connection"
            ) from None
        except socket.gaierror as exc:
            raise Unreachable(
                t.name, Reason.DNS, f"cannot resolve {t.address}: {exc.strerror}"
            ) from None
        except OSError as exc:
            raise Unreachable(
                t.name, Reason.ERROR, f"{t.address}:{t.port}: {exc.strerror or exc}"
            ) from None

    def _connect(self) -> paramiko.Transport:
        t = self.target
        sock = self._socket()
        transport = paramiko.Transport(sock)
        _prefer_gcm(transport)
        transport.banner_timeout = self.timeouts.connect
        transport.handshake_timeout = self.timeouts.connect
        transport.auth_timeout = self.timeouts.connect
        try:
            transport.start_client(timeout=self.timeouts.connect)
        except paramiko.SSHException as exc:
            # paramiko's own thread saw the real cause; the raised one may be generic
            cause = transport.get_exception() or exc
            transport.close()
            text = str(cause)
            if "banner" in text.lower() or isinstance(cause.__cause__, TimeoutError):
                raise Unreachable(
                    t.name,
                    Reason.TIMEOUT,
                    f"no SSH banner from {t.address}:{t.port} within "
                    f"{self.timeouts.connect:g}s (host hung?)",
                ) from None
            raise Unreachable(t.name, Reason.ERROR, f"SSH negotiation failed: {text}") from None
        except (EOFError, OSError) as exc:
            transport.close()
            raise Unreachable(
                t.name, Reason.ERROR, f"connection lost during negotiation: {exc}"
            ) from None
        if not (transport.is_active() and transport.initial_kex_done):
            # start_client gives up at its timeout without raising when the banner
            # or key exchange has not come by then: a hung host
            transport.close()
            raise Unreachable(
                t.name,
                Reason.TIMEOUT,
                f"no SSH banner or key exchange from {t.address}:{t.port} within "
                f"{self.timeouts.connect:g}s (host hung?)",
            )
        try:
            self.known.load_extra(t.known_hosts)
            self.known.verify(t, transport.get_remote_server_key())
            self._authenticate(transport)
        except Unreachable:
            transport.close()
            raise
        return transport

    def _keys(self) -> list[paramiko.PKey]:
        keys: list[paramiko.PKey] = []
        for key_file in self.target.key_files:
            if Path(key_file).is_file():
                try:
                    keys.append(paramiko.PKey.from_path(key_file))
                except (paramiko.SSHException, OSError, ValueError):
                    continue  # unreadable or passphrase-protected: the agent may have it
        if not self.target.identities_only or not keys:
            keys += list(paramiko.Agent().get_keys())
            if not self.target.key_files:
                for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
                    default = Path.home() / ".ssh" / name
                    if default.is_file():
                        try:
                            keys.append(paramiko.PKey.from_path(str(default)))
                        except (paramiko.SSHException, OSError, ValueError):
                            continue
        return keys

    def _authenticate(self, transport: paramiko.Transport) -> None:
        t = self.target
        tried = []
        for key in self._keys():
            try:
                transport.auth_publickey(t.user, key)
                return
            except paramiko.AuthenticationException:
                tried.append(fingerprint(key))
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise Unreachable(t.name, Reason.AUTH, f"authentication failed: {exc}") from None
        what = (
            f"keys tried: {', '.join(tried)}"
            if tried
            else "no key to offer (no key file, no agent)"
        )
        raise Unreachable(t.name, Reason.AUTH, f"{t.user}@{t.address} refused our keys; {what}")

    def run(
        self, command: str, *, stdin: str | bytes | None = None, timeout: float | None = None
    ) -> Result:
        """Run `command` on the host, feeding `stdin`; raise `Unreachable` on a timeout."""
        limit = timeout or self.timeouts.command
        start = time.monotonic()
        transport = self.open()
        try:
            channel = transport.open_session(timeout=self.timeouts.connect)
        except (paramiko.SSHException, OSError) as exc:
            raise Unreachable(
                self.target.name, Reason.ERROR, f"cannot open a session: {exc}"
            ) from None
        with channel:
            channel.settimeout(limit)
            try:
                channel.exec_command(command)
                if stdin is not None:
                    channel.sendall(stdin if isinstance(stdin, bytes) else stdin.encode())
                channel.shutdown_write()
                stdout = _read_all(channel, start + limit, stderr=False)
                stderr = _read_all(channel, start + limit, stderr=True)
                code = channel.recv_exit_status()
            except TimeoutError:
                raise Unreachable(
                    self.target.name, Reason.TIMEOUT, f"command did not finish within {limit:g}s"
                ) from None
            except (OSError, EOFError, paramiko.SSHException) as exc:
                # the host went away mid-command (reset, rebooted, reimaged)
                raise Unreachable(
                    self.target.name, Reason.ERROR, f"connection lost during a command: {exc}"
                ) from None
        return Result(
            stdout.decode(errors="replace"),
            stderr.decode(errors="replace"),
            code,
            time.monotonic() - start,
        )

    def openssh_argv(self, command: str) -> list[str] | None:
        """The same session as an OpenSSH client command line, for bulk data.

        paramiko moves about 50 MB/s when relaying on this kind of machine;
        OpenSSH's client, about three times that. The host key must already be
        known (this connection verified it): the client checks it strictly
        against the same known_hosts files. A host that goes silent (power lost,
        network cut: no reset ever comes) is given up after about the command
        timeout, as a paramiko stream is. None when `ssh` is not installed.
        """
        import shutil as _shutil

        if _shutil.which("ssh") is None:
            return None
        t = self.target
        alive = max(1, round(self.timeouts.command / ALIVE_COUNT))
        files = [str(self.known.own), *t.known_hosts, *(str(f) for f in self.known.user_files)]
        argv = [
            "ssh", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=" + " ".join(shlex.quote(f) for f in files),
            "-o", f"ConnectTimeout={int(self.timeouts.connect)}",
            "-o", f"ServerAliveInterval={alive}", "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
            "-p", str(t.port), "-l", t.user,
        ]  # fmt: skip
        for key in t.key_files:
            argv += ["-i", key]
        if t.identities_only:
            argv += ["-o", "IdentitiesOnly=yes"]
        if t.jump is not None:
            hops: list[str] = []
            hop: Target | None = t.jump
            while hop is not None:
                hops.insert(0, f"{hop.user}@{hop.address}:{hop.port}")
                hop = hop.jump
            argv += ["-J", ",".join(hops)]
        return [*argv, t.address, command]

    def stream(self, command: str) -> Stream:
        """Start `command` with its stdin and stdout as byte streams (large transfers)."""
        transport = self.open()
        try:
            # a large window keeps bulk data flowing without waiting for window updates
            channel = transport.open_session(
                window_size=64 << 20, max_packet_size=1 << 15, timeout=self.timeouts.connect
            )
            channel.settimeout(self.timeouts.command)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError) as exc:
            raise Unreachable(
                self.target.name, Reason.ERROR, f"cannot start a stream: {exc}"
            ) from None
        return Stream(channel, self.target.name)

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None


class Stream:
    """A running remote command's stdin and stdout, for data that does not fit in memory."""

    def __init__(self, channel: paramiko.Channel, host: str) -> None:
        self.channel = channel
        self.host = host

    def send(self, data: bytes, *, given_up: Callable[[], bool] | None = None) -> None:
        """Send all of `data`. With `given_up`, a host slow to take more (busy,
        not gone) is waited for past the channel's timeout until it returns true."""
        done = 0
        try:
            while done < len(data):
                try:
                    sent = self.channel.send(data[done : done + (1 << 16)])
                    if not sent:
                        raise EOFError("the remote end closed its input")
                    done += sent
                except TimeoutError:
                    if given_up is None or given_up():
                        raise Unreachable(self.host, Reason.TIMEOUT, "stream stalled") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise Unreachable(self.host, Reason.ERROR, f"stream broke: {exc}") from None

    def recv(self, size: int = 4 << 20) -> bytes:
        try:
            return bytes(self.channel.recv(size))
        except TimeoutError:
            raise Unreachable(self.host, Reason.TIMEOUT, "stream stalled") from None

    def close_input(self) -> None:
        self.channel.shutdown_write()

    def finish(self) -> Result:
        """Read what is left, wait for the exit code."""
        start = time.monotonic()
        deadline = start + 3600
        try:
            stdout = _read_all(self.channel, deadline, stderr=False)
            stderr = _read_all(self.channel, deadline, stderr=True)
        except TimeoutError:
            self.channel.close()
            raise Unreachable(self.host, Reason.TIMEOUT, "stream stalled before its end") from None
        code = self.channel.recv_exit_status()
        self.channel.close()
        return Result(stdout.decode(errors="replace"), stderr.decode(errors="replace"), code, 0.0)

    def wait(self, keep: int = 1 << 16) -> Result:
        """Wait for the command's exit however long it runs (a database's base backup
        takes hours), keeping the last `keep` bytes of its stdout and stderr.

        Each time it has been quiet for the channel's timeout, the host must open
        a new session on the same connection: one that cannot (gone silent, as on
        power loss) is given up.
        """
        channel = self.channel
        limit = channel.gettimeout() or 60.0
        out, err = bytearray(), bytearray()
        quiet_since = time.monotonic()
        while not channel.exit_status_ready() or channel.recv_ready():
            if channel.recv_ready() or channel.recv_stderr_ready():
                if channel.recv_ready():
                    out = (out + channel.recv(1 << 16))[-keep:]
                if channel.recv_stderr_ready():
                    err = (err + channel.recv_stderr(1 << 16))[-keep:]
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > limit:
                self._answers(limit)
                quiet_since = time.monotonic()
            else:
                channel.status_event.wait(0.1)
        while channel.recv_stderr_ready():
            err = (err + channel.recv_stderr(1 << 16))[-keep:]
        code = channel.recv_exit_status()
        channel.close()
        return Result(out.decode(errors="replace"), err.decode(errors="replace"), code, 0.0)

    def _answers(self, limit: float) -> None:
        transport = self.channel.get_transport()
        try:
            if transport is None:
                raise EOFError("connection closed")
            transport.open_session(timeout=limit).close()
        except (paramiko.SSHException, OSError, EOFError):
            self.channel.close()
            raise Unreachable(
                self.host, Reason.TIMEOUT, f"silent for {limit:g}s and opens no new session"
            ) from None


def _read_all(channel: paramiko.Channel, deadline: float, *, stderr: bool) -> bytes:
    chunks: list[bytes] = []
    read = channel.recv_stderr if stderr else channel.recv
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError
        chunk = read(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def answers_ssh(address: str, port: int, timeout: float) -> bool:
    """True when something at address:port answers with an SSH identification line.

    No key exchange, no login: the cheapest proof that an sshd is alive (a hung
    one accepts TCP but sends no banner).
    """
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


class Connections:
    """One connection per host (and per jump host) for the length of a command."""

    def __init__(self, known: KnownHosts, timeouts: Timeouts) -> None:
        self.known = known
        self.timeouts = timeouts
        self._by_key: dict[tuple[str, str, int], Connection] = {}
        self._lock = threading.Lock()

    def get(self, target: Target) -> Connection:
        with self._lock:
            return self._get(target)

    def _get(self, target: Target) -> Connection:
        key = (target.user, target.address, target.port)
        if key not in self._by_key:
            jump = self._get(target.jump) if target.jump else None
            self._by_key[key] = Connection(target, self.known, self.timeouts, jump)
        return self._by_key[key]

    def close(self) -> None:
        with self._lock:
            for connection in self._by_key.values():
                connection.close()
            self._by_key.clear()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
