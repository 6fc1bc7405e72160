#!/usr/bin/env python3
"""Runs a compose file's services without a container engine, then exercises the cluster.

    sudo docker/rehearse.py docker/compose.sentinel.yml BIN_DIR   # BIN_DIR: coffer-node, coffer

Linux and root only (network namespaces), `redis-server`/`redis-cli` on the PATH, PyYAML.
Every service gets its own network namespace on a bridge, at its static compose address (the
gateway is the subnet's first address, as with Docker), and runs the compose file's own command
and environment: the Redis services' `command` (with `/data` mapped to a directory and the
official image's `docker-entrypoint.sh` replaced by a pass-through), `coffer-init` for the
init service, `coffer-node start` for the replicas. Services start in `depends_on` order and
wait for the conditions the file states, using the file's healthcheck commands; a replica's
health check is the image's (`coffer --cluster $COFFER_HEALTH_CLUSTER status`, in its
namespace). Differences from Docker, on purpose: the testnet is generated with host API ports
from 29443 (so it never collides with a real deployment), data and the testnet live in a
temporary directory, and a forwarder stands in for the port mapping on 127.0.0.1.

Then, with the wallet CLI on the host and cluster.json + the CA copied out as docs/DEPLOY.md
says: status, mint, transfer (verified by f+1 replicas), stop a replica and transfer, restart it
with the same data and wait until healthy, kill a Redis master (and for a Redis Cluster bring it
back as the restart policy would) and transfer again. Everything started is stopped on exit.
Prints `rehearse <file>: OK` or a FAIL line and exits 1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

HOST_PORT = 29443
API_PORT = 8443


class Fail(Exception):
    pass


def sh(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise Fail(f"{' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def step(msg: str) -> None:
    print(f"rehearse: {msg}", flush=True)


class Rehearsal:
    def __init__(self, compose: Path, bin_dir: Path) -> None:
        self.compose = compose
        self.doc = yaml.safe_load(compose.read_text())
        self.services: dict = self.doc["services"]
        self.bin = bin_dir
        self.work = Path(tempfile.mkdtemp(prefix="coffer-rehearse-"))
        ident = os.getpid() % 10000
        self.bridge = f"cfb{ident}"
        self.veth = f"cf{ident}v"
        self.ns_prefix = f"cfr{ident}-"
        self.procs: dict[str, subprocess.Popen] = {}
        self.timer: threading.Timer | None = None
        self.namespaces: list[str] = []
        net = self.doc["networks"]["coffer"]["ipam"]["config"][0]["subnet"]
        self.subnet = ipaddress.ip_network(net)
        self.gateway = str(next(self.subnet.hosts()))
        used = {self.ip_of(s) for s in self.services if self.ip_of(s)}
        spare = (str(h) for h in reversed(list(self.subnet.hosts())) if str(h) not in used)
        self.addr = {s: self.ip_of(s) or next(spare) for s in self.services}
        stub = self.work / "bin"
        stub.mkdir()
        (stub / "docker-entrypoint.sh").write_text('#!/bin/sh\nexec "$@"\n')
        (stub / "docker-entrypoint.sh").chmod(0o755)
        self.path = f"{stub}:{bin_dir}:{os.environ['PATH']}"

    def ip_of(self, name: str) -> str | None:
        nets = self.services[name].get("networks")
        if isinstance(nets, dict):
            return (nets.get("coffer") or {}).get("ipv4_address")
        return None

    # ---- network ----
    def network(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, name in enumerate(self.services):
            ns = f"{self.ns_prefix}{i}"
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            sh("ip", "link", "add", f"{self.veth}{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", f"{self.veth}{i}", "master", self.bridge)
            sh("ip", "link", "set", f"{self.veth}{i}", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.addr[name]}/{self.subnet.prefixlen}", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def ns(self, name: str) -> str:
        return f"{self.ns_prefix}{list(self.services).index(name)}"

    # ---- services ----
    def env_of(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = self.path
        env["HOME"] = str(self.work / "home" / name)
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        for k, v in (self.services[name].get("environment") or {}).items():
            env[k] = str(v).replace("${COFFER_LOG:-info}", "info")
        return env

    def argv_of(self, name: str) -> tuple[list[str], dict[str, str]]:
        svc = self.services[name]
        env = self.env_of(name)
        data = self.work / "data" / name
        data.mkdir(parents=True, exist_ok=True)
        cmd = svc.get("command")
        if str(svc.get("image", "")).startswith("redis:"):
            if cmd[:2] == ["sh", "-c"]:
                script = cmd[2].replace("$$", "$").replace("/data", str(data))
                return ["sh", "-c", script], env
            argv = [str(data) + str(a)[5:] if str(a) == "/data" or str(a).startswith("/data/") else str(a) for a in cmd]
            argv = [a.replace("${COFFER_APPENDFSYNC:-everysec}", "everysec") for a in argv]
            return argv, env
        if "coffer-init" in str(svc.get("entrypoint")):
            env["COFFER_INIT_OUT"] = str(self.work / "cluster")
            env["COFFER_INIT_BASE_PORT"] = str(HOST_PORT)
            return ["sh", str(Path(__file__).parent / "coffer-init.sh")], env
        if cmd[:2] == ["start", "--home"]:
            env["COFFER_DATA_DIR"] = str(data)
            env["COFFER_HEALTH_CLUSTER"] = env["COFFER_HEALTH_CLUSTER"].replace("/cluster", str(self.work / "cluster"))
            home = cmd[2].replace("/cluster", str(self.work / "cluster"))
            return [str(self.bin / "coffer-node"), "start", "--home", home], env
        raise Fail(f"{name}: do not know how to run {cmd}")

    def oneshot(self, name: str) -> bool:
        return str(self.services[name].get("restart", "no")) == "no"

    def run(self, name: str) -> None:
        argv, env = self.argv_of(name)
        log = open(self.work / f"{name}.log", "ab")
        full = ["ip", "netns", "exec", self.ns(name), *argv]
        if self.oneshot(name):
            r = subprocess.run(full, env=env, stdout=log, stderr=log, timeout=180)
            if r.returncode != 0:
                raise Fail(f"{name} exited {r.returncode}: {self.tail(name)}")
            return
        self.procs[name] = subprocess.Popen(full, env=env, stdout=log, stderr=log, start_new_session=True)

    def tail(self, name: str) -> str:
        lines = (self.work / f"{name}.log").read_text(errors="replace").splitlines()
        return " | ".join(lines[-3:])

    def healthy(self, name: str) -> bool:
        svc = self.services[name]
        test = (svc.get("healthcheck") or {}).get("test")
        env = self.env_of(name)
        if test is None:  # the image's HEALTHCHECK, as written in the Dockerfile
            env = self.argv_of(name)[1]
            argv = self.image_healthcheck()
        elif test[0] == "CMD-SHELL":
            argv = ["sh", "-c", test[1]]
        else:
            argv = list(test[1:])
        r = subprocess.run(["ip", "netns", "exec", self.ns(name), *argv], env=env, capture_output=True, timeout=20)
        return r.returncode == 0

    def image_healthcheck(self) -> list[str]:
        text = (Path(__file__).parent / "Dockerfile").read_text().replace("\\\n", " ")
        line = next(ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK"))
        cmd = line.split(" CMD ", 1)[1].strip()
        if cmd.startswith("["):
            import json
            return json.loads(cmd)
        return ["sh", "-c", cmd]

    def wait_healthy(self, name: str, timeout: float = 90) -> None:
        end = time.time() + timeout
        while time.time() < end:
            p = self.procs.get(name)
            if p is not None and p.poll() is not None:
                raise Fail(f"{name} exited: {self.tail(name)}")
            if self.healthy(name):
                return
            time.sleep(1)
        raise Fail(f"{name} not healthy after {timeout} s: {self.tail(name)}")

    def up(self) -> None:
        done: set[str] = set()
        pending = list(self.services)
        while pending:
            for name in pending:
                deps = self.services[name].get("depends_on") or {}
                if all(d in done for d in deps):
                    break
            else:
                raise Fail(f"depends_on cannot be satisfied for {pending}")
            for dep, spec in deps.items():
                if spec.get("condition") == "service_healthy":
                    self.wait_healthy(dep)
            self.run(name)
            done.add(name)
            pending.remove(name)
        for name in self.procs:
            self.wait_healthy(name)

    def forward(self) -> None:
        replicas = sorted(n for n in self.services if (self.services[n].get("command") or [""])[0] == "start")

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except Exception:
                pass
            finally:
                w.close()

        def handler(ip):
            async def h(r, w):
                try:
                    r2, w2 = await asyncio.open_connection(ip, API_PORT)
                except Exception:
                    w.close()
                    return
                await asyncio.gather(pipe(r, w2), pipe(r2, w))
            return h

        async def serve():
            servers = [
                await asyncio.start_server(handler(self.addr[n]), "127.0.0.1", HOST_PORT + k)
                for k, n in enumerate(replicas)
            ]
            self.forwarding.set()
            await asyncio.gather(*(s.serve_forever() for s in servers))

        self.forwarding = threading.Event()
        threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
        if not self.forwarding.wait(10):
            raise Fail("port forwarder did not start")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        p = self.procs.pop(name)
        os.killpg(p.pid, sig)
        p.wait(timeout=20)

    def down(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer.join()
        for name in list(self.procs):
            try:
                self.stop(name, signal.SIGKILL)
            except Exception:
                pass
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        if not os.environ.get("KEEP"):
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            print(f"rehearse: kept {self.work}")

    # ---- the exercise ----
    def exercise(self) -> None:
        home = self.work / "wallet"
        (home / "coffer" / "tls").mkdir(parents=True)
        shutil.copy(self.work / "cluster" / "cluster.json", home / "coffer")
        shutil.copy(self.work / "cluster" / "tls" / "ca.pem", home / "coffer" / "tls")
        env = dict(os.environ, HOME=str(home), COFFER_PASSWORD="rehearsal", COFFER_KDF_M_KIB="64", COFFER_KDF_T="1")
        cluster = str(home / "coffer" / "cluster.json")

        def cli(*args: str, stdin: str | None = None) -> str:
            r = subprocess.run([str(self.bin / "coffer"), "--cluster", cluster, *args], env=env,
                               input=stdin, capture_output=True, text=True, timeout=90)
            if r.returncode != 0:
                raise Fail(f"coffer {' '.join(args)}: {r.stderr.strip()}")
            return r.stdout

        def balance(want: int) -> None:
            out = cli("balance", "bob")
            if f": {want} " not in out:
                raise Fail(f"bob's balance is not {want}: {out.strip()}")

        cli("status")
        cli("keys", "import", "issuer", stdin=(self.work / "cluster" / "issuer.key").read_text())
        cli("keys", "new", "alice")
        cli("keys", "new", "bob")
        cli("mint", "--issuer", "issuer", "--to", "alice", "1000")
        cli("send", "--from", "alice", "--to", "bob", "250")
        balance(250)
        step("mint + transfer verified through the published ports")

        self.stop("replica2")
        if self.healthy("replica2"):
            raise Fail("replica2's health check passes while it is stopped")
        cli("send", "--from", "alice", "--to", "bob", "10")
        self.run("replica2")
        self.wait_healthy("replica2")
        step("replica2 stopped (cluster kept committing) and restarted with its data: healthy")

        # A replica moved to a new host: same /cluster files and Redis namespace, empty /data.
        self.stop("replica3")
        shutil.rmtree(self.work / "data" / "replica3")
        self.run("replica3")
        self.wait_healthy("replica3")
        step("replica3 restarted with an empty data volume: healthy")

        redis = [n for n in self.procs if str(self.services[n].get("image", "")).startswith("redis:")]
        if any("--cluster-enabled" in map(str, self.services[n].get("command") or []) for n in redis):
            nodes = sh("ip", "netns", "exec", self.ns(redis[0]), "redis-cli", "cluster", "nodes").stdout
            master_ip = next(ln.split()[1].split(":")[0] for ln in nodes.splitlines()
                             if "master" in ln.split()[2] and "fail" not in ln.split()[2])
            victim = next(n for n in redis if self.addr[n] == master_ip)
            self.stop(victim, signal.SIGKILL)
            # The restart policy brings it back; it rejoins as a replica of the promoted node.
            self.timer = threading.Timer(8, lambda: self.run(victim))
            self.timer.start()
        else:
            victim = next(n for n in redis if "master" in n)
            self.stop(victim, signal.SIGKILL)
        cli("send", "--from", "alice", "--to", "bob", "5")
        balance(265)
        step(f"{victim} killed: transfer committed after the failover")

        # `docker compose stop` then `up` again: the one-shots find their work done, Redis
        # keeps its roles and data, every replica restores its state.
        time.sleep(9)  # let a delayed restart above happen first
        for name in list(self.procs):
            self.stop(name)
        self.up()
        for line in (self.work / "init.log").read_text().splitlines()[-1:]:
            if "nothing to do" not in line:
                raise Fail(f"init ran again on a complete volume: {line}")
        balance(265)
        cli("send", "--from", "alice", "--to", "bob", "1")
        balance(266)
        step("whole project stopped and started again: state kept, init skipped, transfers commit")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so that `finally` stops everything this started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    r = Rehearsal(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
    try:
        r.network()
        r.up()
        step(f"all services up and healthy ({len(r.services)} services)")
        r.forward()
        r.exercise()
        print(f"rehearse {sys.argv[1]}: OK")
        return 0
    except (Fail, subprocess.TimeoutExpired) as e:
        print(f"rehearse: FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        r.down()


if __name__ == "__main__":
    sys.exit(main())
