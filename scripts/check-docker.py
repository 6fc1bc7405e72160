#!/usr/bin/env python3
"""Static checks of the container files: docker/Dockerfile, /.dockerignore and docker/compose.*.yml.

We have no container engine to run them, so this checks what can be checked without one:
structure, cross-references between services, host paths, environment variables against what
the node documents, ports, addresses, and the Redis topology each file promises.

    scripts/check-docker.py                   # static checks only (needs PyYAML)
    scripts/check-docker.py --init-smoke BIN  # also runs docker/coffer-init.sh with each
                                              # compose file's init environment against the
                                              # coffer-node binary BIN, in a temporary directory

Exits 1 on any failure, printing every failure and a summary line
`docker checks: N passed, M failed`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    print("docker checks: PyYAML missing (pip install pyyaml)", file=sys.stderr)
    sys.exit(2)

try:
    import tomllib  # Python 3.11+
except ImportError:  # pragma: no cover
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
INIT_SCRIPT = DOCKER / "coffer-init.sh"
COMPOSE_FILES = [DOCKER / "compose.sentinel.yml", DOCKER / "compose.cluster.yml"]

# The node's COFFER_* overrides, used only while node/src/config.rs does not name any (before
# the `wire` branch lands). Keep in sync with that file's module docs.
FALLBACK_NODE_ENV = {
    "COFFER_P2P_LISTEN",
    "COFFER_API_LISTEN",
    "COFFER_DATA_DIR",
    "COFFER_STORAGE_URL",
    "COFFER_LOG",
}
# Where the node's and the CLI's variables are documented (grepped for COFFER_[A-Z0-9_]+).
NODE_ENV_SOURCES = ["node/src/config.rs", "node/src/bin/coffer-node.rs"]
CLI_ENV_SOURCES = ["wallet-cli/src/main.rs"]
# Standard, non-Coffer variables a replica may get.
GENERIC_ENV = {"RUST_BACKTRACE", "TZ"}

VALID_CONDITIONS = {
    "service_started",
    "service_healthy",
    "service_completed_successfully",
}


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)
        return ok


C = Checks()


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


# ---- documented environment --------------------------------------------------------------


def env_names(paths: list[str]) -> set[str]:
    names: set[str] = set()
    for p in paths:
        f = ROOT / p
        if f.exists():
            names |= set(re.findall(r"\bCOFFER_[A-Z0-9_]+\b", f.read_text()))
    return names


def node_env() -> tuple[set[str], str]:
    found = env_names(NODE_ENV_SOURCES)
    if any(n.endswith("_LISTEN") for n in found):
        return found, "node/src/config.rs"
    return found | FALLBACK_NODE_ENV, "the fallback list in scripts/check-docker.py"


def init_env() -> set[str]:
    return set(re.findall(r"\$\{?(COFFER_[A-Z0-9_]+)", INIT_SCRIPT.read_text()))


# ---- Dockerfile ----------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    if buf:
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerignore_patterns() -> list[str]:
    f = ROOT / ".dockerignore"
    if not f.exists():
        return []
    return [
        ln.strip()
        for ln in f.read_text().splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]


def ignored(path: str, patterns: list[str]) -> bool:
    import fnmatch

    path = path.strip("/").removeprefix("./")
    hit = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip("/")
        if p.startswith("**/"):
            match = any(
                fnmatch.fnmatch("/".join(path.split("/")[i:]), p[3:])
                or path.split("/")[i:][:1] == [p[3:]]
                for i in range(len(path.split("/")))
            )
        else:
            match = fnmatch.fnmatch(path, p) or path.startswith(p + "/")
        if match:
            hit = not neg
    return hit


def check_dockerfile() -> dict:
    info: dict = {"healthcheck": False, "expose": set(), "copied": set()}
    if not C.check(DOCKERFILE.exists(), f"{rel(DOCKERFILE)} missing"):
        return info
    ins = dockerfile_instructions(DOCKERFILE.read_text())
    patterns = dockerignore_patterns()
    C.check(
        any(ignored("target", [p]) for p in patterns)
        and any(ignored(".git", [p]) for p in patterns),
        ".dockerignore missing or does not exclude target/ and .git",
    )
    stages: list[dict] = []
    for word, rest in ins:
        if word == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            if not C.check(m is not None, f"Dockerfile: cannot parse FROM {rest!r}"):
                continue
            base, name = m.group(1), m.group(2)
            names = [s["name"] for s in stages]
            C.check(
                name is None or name not in names,
                f"Dockerfile: stage name {name!r} used twice",
            )
            stages.append({"base": base, "name": name, "ins": []})
        elif stages:
            stages[-1]["ins"].append((word, rest))
        else:
            C.check(word == "ARG", f"Dockerfile: {word} before the first FROM")
    if not C.check(len(stages) >= 2, "Dockerfile: want a multi-stage build (builder + runtime)"):
        return info
    C.check(
        stages[0]["base"].startswith("rust:1-bookworm"),
        f"Dockerfile: builder stage is {stages[0]['base']}, want rust:1-bookworm",
    )
    final = stages[-1]
    C.check(
        final["base"].startswith("debian:bookworm-slim")
        or final["base"].startswith("gcr.io/distroless/cc"),
        f"Dockerfile: runtime stage is {final['base']}, want debian:bookworm-slim or distroless cc",
    )
    for i, st in enumerate(stages):
        earlier = {s["name"] for s in stages[:i] if s["name"]} | {str(j) for j in range(i)}
        for word, rest in st["ins"]:
            if word not in ("COPY", "ADD"):
                continue
            args = shlex.split(rest)
            flags = [a for a in args if a.startswith("--")]
            paths = [a for a in args if not a.startswith("--")]
            if not C.check(len(paths) >= 2, f"Dockerfile: {word} {rest!r} needs a source and a destination"):
                continue
            frm = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if frm is not None:
                C.check(
                    frm in earlier,
                    f"Dockerfile: COPY --from={frm} does not name an earlier stage",
                )
                if st is final:
                    info["copied"] |= {Path(p).name for p in paths[:-1]}
                continue
            for src in paths[:-1]:
                C.check(
                    (ROOT / src).exists(),
                    f"Dockerfile: COPY source {src} does not exist in the build context",
                )
                C.check(
                    not ignored(src, patterns),
                    f"Dockerfile: COPY source {src} is excluded by .dockerignore",
                )
    # Cargo reads every workspace member's manifest, even for `-p`: each must be in the image.
    copied_to_builder = {
        shlex.split(rest)[0].rstrip("/")
        for word, rest in stages[0]["ins"]
        if word == "COPY" and not rest.startswith("--")
    }
    members = re.search(r"^members\s*=\s*\[([^\]]*)\]", (ROOT / "Cargo.toml").read_text(), re.M)
    if C.check(members is not None, "Cargo.toml: no [workspace] members list"):
        for member in re.findall(r'"([^"]+)"', members.group(1)):
            C.check(
                member in copied_to_builder,
                f"Dockerfile: workspace member {member} is not copied into the builder",
            )
    build_runs = [r for w, r in stages[0]["ins"] if w == "RUN" and "cargo build" in r]
    C.check(len(build_runs) == 1, "Dockerfile: want exactly one `cargo build` RUN in the builder")
    for r in build_runs:
        for needle in ("--release", "--locked", "-p coffer-node", "-p coffer-wallet"):
            C.check(needle in r, f"Dockerfile: cargo build lacks {needle}")
        C.check(
            "--mount=type=cache,target=/usr/local/cargo/registry" in r,
            "Dockerfile: cargo build has no cache mount for the registry",
        )
        tgt = re.search(r"--mount=type=cache,target=(\S*?/target)\b", r)
        C.check(tgt is not None, "Dockerfile: cargo build has no cache mount for the target dir")
    C.check(
        {"coffer-node", "coffer"} <= info["copied"],
        f"Dockerfile: runtime copies {sorted(info['copied'])} from the builder, want coffer-node and coffer",
    )
    users = [r for w, r in final["ins"] if w == "USER"]
    C.check(bool(users), "Dockerfile: runtime stage has no USER (must not run as root)")
    if users:
        user = users[-1].split(":")[0]
        C.check(user not in ("root", "0"), f"Dockerfile: runtime USER is {users[-1]}")
        C.check(user == "10001", f"Dockerfile: runtime USER is {users[-1]}, want 10001")
    eps = [r for w, r in final["ins"] if w == "ENTRYPOINT"]
    ok = False
    if eps:
        try:
            ok = json.loads(eps[-1]) == ["coffer-node"]
        except json.JSONDecodeError:
            ok = False
    C.check(ok, f'Dockerfile: ENTRYPOINT is {eps[-1] if eps else None}, want ["coffer-node"]')
    hc = [r for w, r in final["ins"] if w == "HEALTHCHECK"]
    info["healthcheck"] = C.check(
        bool(hc) and not hc[-1].upper().startswith("NONE"), "Dockerfile: no HEALTHCHECK"
    )
    for w, r in final["ins"]:
        if w == "EXPOSE":
            info["expose"] |= {int(p.split("/")[0]) for p in r.split()}
    C.check(bool(info["expose"]), "Dockerfile: no EXPOSE")
    for w, r in final["ins"]:
        if w == "RUN" and "apt-get install" in r:
            pkgs = [
                a
                for a in r.split("apt-get install", 1)[1].split("&&")[0].split()
                if not a.startswith("-")
            ]
            C.check(
                pkgs == ["ca-certificates"],
                f"Dockerfile: runtime installs {pkgs}, want ca-certificates only",
            )
    inits = [r for w, r in final["ins"] if w == "COPY" and "coffer-init" in r]
    C.check(
        any("--chmod=0755" in r for r in inits) or os.access(INIT_SCRIPT, os.X_OK),
        "Dockerfile: coffer-init is not copied executable",
    )
    return info


# ---- compose -------------------------------------------------------------------------------


def as_list_env(env) -> dict[str, str]:
    if env is None:
        return {}
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    out = {}
    for item in env:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def command_text(svc: dict) -> str:
    cmd = svc.get("command", "")
    return " ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd)


def parse_port(spec) -> tuple[str | None, int | None, int | None]:
    """(host ip, host port, container port) of a short or long port spec."""
    if isinstance(spec, dict):
        return spec.get("host_ip"), int(spec.get("published", 0)) or None, int(spec["target"])
    parts = str(spec).split("/")[0].split(":")
    if len(parts) == 3:
        return parts[0], int(parts[1]), int(parts[2])
    if len(parts) == 2:
        return None, int(parts[0]), int(parts[1])
    return None, None, int(parts[0])


def sock(value: str) -> tuple[str, int] | None:
    m = re.fullmatch(r"(\d+\.\d+\.\d+\.\d+):(\d+)", value)
    return (m.group(1), int(m.group(2))) if m else None


def check_compose(path: Path, df: dict, documented: set[str], source: str, seen_ports: dict) -> dict:
    name = rel(path)
    if not C.check(path.exists(), f"{name} missing"):
        return {}
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        C.check(False, f"{name}: invalid YAML: {e}")
        return {}
    C.check(True, "")
    C.check(bool(doc.get("name")), f"{name}: no top-level project name")
    services: dict = doc.get("services") or {}
    volumes_decl = set((doc.get("volumes") or {}).keys())
    networks_decl: dict = doc.get("networks") or {}
    base = path.parent
    subnets = []
    for net, spec in networks_decl.items():
        for cfg in ((spec or {}).get("ipam") or {}).get("config") or []:
            subnets.append(ipaddress.ip_network(cfg["subnet"]))
    ips: dict[str, str] = {}
    for sname, svc in services.items():
        where = f"{name}: service {sname}"
        has_image = bool(svc.get("image"))
        build = svc.get("build")
        C.check(has_image or bool(build), f"{where} has neither image nor build")
        if build:
            ctx = build if isinstance(build, str) else build.get("context", ".")
            ctx_path = (base / ctx).resolve()
            C.check(ctx_path.is_dir(), f"{where}: build context {ctx} does not exist")
            dfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            C.check((ctx_path / dfile).is_file(), f"{where}: dockerfile {dfile} not found in {ctx}")
        deps = svc.get("depends_on") or {}
        dep_items = deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)
        for dep, spec in dep_items:
            if not C.check(dep in services, f"{where}: depends_on names unknown service {dep}"):
                continue
            cond = (spec or {}).get("condition", "service_started")
            C.check(cond in VALID_CONDITIONS, f"{where}: unknown depends_on condition {cond}")
            target = services[dep]
            if cond == "service_healthy":
                hc = target.get("healthcheck") or {}
                own = bool(hc.get("test")) and not hc.get("disable")
                inherited = bool(target.get("build")) and df.get("healthcheck") and not hc.get("disable")
                C.check(own or inherited, f"{where}: waits for {dep} to be healthy, but {dep} has no healthcheck")
            if cond == "service_completed_successfully":
                C.check(
                    str(target.get("restart", "no")) == "no",
                    f"{where}: waits for {dep} to complete, but {dep} restarts ({target.get('restart')})",
                )
        for vol in svc.get("volumes") or []:
            if isinstance(vol, dict):
                src, kind = vol.get("source"), vol.get("type", "volume")
            else:
                src = str(vol).split(":")[0]
                kind = "bind" if src.startswith((".", "/", "~")) else "volume"
            if kind == "bind":
                C.check((base / src).exists(), f"{where}: host path {src} does not exist")
            elif src:
                C.check(src in volumes_decl, f"{where}: volume {src} is not declared")
        for ef in svc.get("env_file") or []:
            p = ef if isinstance(ef, str) else ef.get("path")
            C.check((base / p).exists(), f"{where}: env_file {p} does not exist")
        for kind in ("configs", "secrets"):
            for ref in svc.get(kind) or []:
                ref_name = ref if isinstance(ref, str) else ref.get("source")
                C.check(ref_name in (doc.get(kind) or {}), f"{where}: {kind[:-1]} {ref_name} not declared")
        nets = svc.get("networks") or {}
        for net in nets if isinstance(nets, list) else nets.keys():
            C.check(net in networks_decl, f"{where}: network {net} not declared")
        if isinstance(nets, dict):
            for net, spec in nets.items():
                ip = (spec or {}).get("ipv4_address")
                if ip:
                    C.check(ip not in ips.values(), f"{where}: address {ip} used twice")
                    C.check(
                        any(ipaddress.ip_address(ip) in s for s in subnets),
                        f"{where}: {ip} outside the network's subnet",
                    )
                    ips[sname] = ip
        for spec in svc.get("ports") or []:
            host_ip, host_port, _ = parse_port(spec)
            C.check(host_ip == "127.0.0.1", f"{where}: port {spec} is not published on 127.0.0.1 only")
            if host_port is not None:
                C.check(
                    host_port not in seen_ports,
                    f"{where}: host port {host_port} already published by {seen_ports.get(host_port)}",
                )
                seen_ports[host_port] = f"{name}:{sname}"
    for kind, decl in (("configs", doc.get("configs")), ("secrets", doc.get("secrets"))):
        for cname, spec in (decl or {}).items():
            if (spec or {}).get("file"):
                C.check((base / spec["file"]).exists(), f"{name}: {kind} {cname} file {spec['file']} missing")

    # Shell snippets (`sh -c SCRIPT` commands): syntax, after compose's `$$` -> `$` unescaping.
    for sname, svc in services.items():
        cmd = svc.get("command")
        if isinstance(cmd, list) and len(cmd) >= 3 and cmd[0] in ("sh", "bash") and cmd[1] == "-c":
            script = str(cmd[2]).replace("$$", "$")
            r = subprocess.run([cmd[0], "-n"], input=script, capture_output=True, text=True)
            C.check(r.returncode == 0, f"{name}: {sname}: shell syntax: {r.stderr.strip()}")

    # depends_on cycles
    def deps_of(s):
        d = services[s].get("depends_on") or {}
        return [x for x in (d.keys() if isinstance(d, dict) else d) if x in services]

    state: dict[str, int] = {}

    def visit(s, stack):
        if state.get(s) == 1:
            return False
        if state.get(s) == 2:
            return True
        state[s] = 1
        ok = all(visit(d, stack + [s]) for d in deps_of(s))
        state[s] = 2
        return ok

    C.check(all(visit(s, []) for s in services), f"{name}: depends_on has a cycle")
    return {"doc": doc, "services": services, "ips": ips}


def check_coffer_topology(path: Path, info: dict, df: dict, documented: set[str], source: str) -> None:
    name = rel(path)
    services = info["services"]
    ips = info["ips"]
    inits = {s: v for s, v in services.items() if "coffer-init" in json.dumps(v.get("entrypoint", ""))}
    if not C.check(len(inits) == 1, f"{name}: want exactly one init service running coffer-init"):
        return
    init_name, init = next(iter(inits.items()))
    ienv = as_list_env(init.get("environment"))
    known_init = init_env()
    for k in ienv:
        C.check(k in known_init, f"{name}: init gets {k}, which docker/coffer-init.sh does not read")
    C.check(str(init.get("restart", "no")) == "no", f"{name}: init must not restart")
    C.check(
        any(str(v).split(":")[1:2] == [ienv.get("COFFER_INIT_OUT", "/cluster")] for v in init.get("volumes") or []),
        f"{name}: init does not mount a volume at its output directory",
    )
    replicas = {
        s: v
        for s, v in services.items()
        if isinstance(v.get("command"), list) and v["command"][:1] == ["start"]
    }
    n = int(ienv.get("COFFER_INIT_REPLICAS", "4"))
    C.check(len(replicas) == n, f"{name}: {len(replicas)} replica services, init generates {n}")
    peer_ips = ienv.get("COFFER_INIT_PEER_IPS", "").split()
    base_port = int(ienv.get("COFFER_INIT_BASE_PORT", "8443"))
    api_port = int(ienv.get("COFFER_INIT_API_PORT", "8443"))
    p2p_port = int(ienv.get("COFFER_INIT_P2P_PORT", "8543"))
    C.check(
        {api_port, p2p_port} <= df.get("expose", set()),
        f"{name}: Dockerfile EXPOSE {sorted(df.get('expose', []))} lacks {api_port}/{p2p_port}",
    )
    data_vols: dict[str, str] = {}
    for sname, svc in replicas.items():
        where = f"{name}: {sname}"
        cmd = svc["command"]
        m = re.fullmatch(r"/cluster/replica(\d+)", cmd[2]) if len(cmd) == 3 and cmd[1] == "--home" else None
        if not C.check(m is not None, f"{where}: command {cmd}, want start --home /cluster/replicaK"):
            continue
        k = int(m.group(1))
        env = as_list_env(svc.get("environment"))
        allowed = documented | GENERIC_ENV
        for var in env:
            C.check(var in allowed, f"{where}: {var} is not documented by the node ({source}) or the image")
        vols = [str(v) for v in svc.get("volumes") or []]
        C.check(
            any(v.split(":")[1:] == ["/cluster", "ro"] for v in vols),
            f"{where}: the generated testnet must be mounted read-only at /cluster",
        )
        data_dir = env.get("COFFER_DATA_DIR")
        dv = [v.split(":")[0] for v in vols if data_dir and v.split(":")[1:2] == [data_dir]]
        if C.check(bool(dv), f"{where}: COFFER_DATA_DIR {data_dir} is not a mounted volume"):
            C.check(dv[0] not in data_vols, f"{where}: data volume {dv[0]} shared with {data_vols.get(dv[0])}")
            data_vols[dv[0]] = sname
        C.check(
            env.get("COFFER_HEALTH_CLUSTER") == f"/cluster/replica{k}/health.json",
            f"{where}: COFFER_HEALTH_CLUSTER must be /cluster/replica{k}/health.json (written by coffer-init)",
        )
        p2p = sock(env.get("COFFER_P2P_LISTEN", ""))
        C.check(
            p2p is not None and p2p[1] == p2p_port and p2p[0] in (ips.get(sname), "0.0.0.0"),
            f"{where}: COFFER_P2P_LISTEN {env.get('COFFER_P2P_LISTEN')} is not {ips.get(sname)}:{p2p_port}",
        )
        api = sock(env.get("COFFER_API_LISTEN", ""))
        C.check(
            api is not None and api == ("0.0.0.0", api_port),
            f"{where}: COFFER_API_LISTEN {env.get('COFFER_API_LISTEN')} is not 0.0.0.0:{api_port}",
        )
        C.check(
            k < len(peer_ips) and peer_ips[k] == ips.get(sname),
            f"{where}: address {ips.get(sname)} differs from COFFER_INIT_PEER_IPS[{k}]",
        )
        ports = [parse_port(p) for p in svc.get("ports") or []]
        C.check(
            ports == [("127.0.0.1", base_port + k, api_port)],
            f"{where}: publishes {ports}, want 127.0.0.1:{base_port + k}:{api_port} (cluster.json's URL)",
        )
        deps = svc.get("depends_on") or {}
        C.check(
            (deps.get(init_name) or {}).get("condition") == "service_completed_successfully",
            f"{where}: must wait for {init_name} to complete",
        )
    check_storage(path, services, ips, ienv.get("COFFER_INIT_STORAGE", ""))


# Fields of the node's storage config, used while node/src/storage/config.rs is absent.
FALLBACK_STORAGE_FIELDS = {
    "RedisConfig": {"prefix", "tls", "tls_ca_file", "durability", "retry", "connect_timeout_ms", "response_timeout_ms"},
    "RedisMode": {"url", "master_name", "sentinels", "seeds"},
    "DurabilityConfig": {"wait_replicas", "wait_timeout_ms"},
    "RetryConfig": {"base_delay_ms", "max_delay_ms", "max_elapsed_ms"},
}


def storage_fields() -> tuple[dict[str, set[str]], str]:
    """Field names of the storage config structs, read from node/src/storage/config.rs."""
    f = ROOT / "node/src/storage/config.rs"
    if not f.exists():
        return FALLBACK_STORAGE_FIELDS, "the fallback list in scripts/check-docker.py"
    text = f.read_text()
    out: dict[str, set[str]] = {}
    for kind, struct in (("struct", "RedisConfig"), ("enum", "RedisMode"), ("struct", "DurabilityConfig"), ("struct", "RetryConfig")):
        m = re.search(rf"pub {kind} {struct} \{{(.*?)\n\}}", text, re.S)
        names = set(re.findall(r"^\s+(?:pub )?(\w+): ", m.group(1), re.M)) if m else set()
        # `#[serde(flatten)] mode` is not a key of its own.
        out[struct] = names - {"mode"}
    if not all(out.values()):
        return FALLBACK_STORAGE_FIELDS, "the fallback list in scripts/check-docker.py"
    return out, "node/src/storage/config.rs"


def check_storage(path: Path, services: dict, ips: dict, template: str) -> None:
    name = rel(path)
    if not C.check(bool(template.strip()), f"{name}: init has no COFFER_INIT_STORAGE"):
        return
    C.check("@PREFIX@" in template, f"{name}: storage template does not use @PREFIX@ for the prefix")
    if tomllib is None:
        return
    try:
        st = tomllib.loads(template.replace("@PREFIX@", "coffer:devnet-0:replica0"))
    except tomllib.TOMLDecodeError as e:
        C.check(False, f"{name}: storage template is not TOML: {e}")
        return
    C.check(st.get("backend") == "redis", f"{name}: storage backend {st.get('backend')}, want redis")
    fields, source = storage_fields()
    allowed = {"backend", "mode"} | fields["RedisConfig"] | fields["RedisMode"]
    for key in st:
        C.check(key in allowed, f"{name}: storage key {key} is not in RedisConfig ({source})")
    for table, struct in (("durability", "DurabilityConfig"), ("retry", "RetryConfig")):
        for key in st.get(table) or {}:
            C.check(key in fields[struct], f"{name}: storage {table}.{key} is not in {struct} ({source})")
    redis = {s: v for s, v in services.items() if str(v.get("image", "")).startswith("redis:")}
    for s, v in redis.items():
        C.check(str(v.get("image")) == "redis:7", f"{name}: {s} uses {v.get('image')}, want the official redis:7")
    sentinels = {s for s, v in redis.items() if "--sentinel" in command_text(v)}
    oneshot = {s for s, v in redis.items() if "--cluster create" in command_text(v)}
    data = set(redis) - sentinels - oneshot
    for s in data:
        text = command_text(redis[s])
        C.check(
            re.search(r"appendonly[\s'\"]+yes", text) is not None,
            f"{name}: {s} does not turn AOF on (appendonly yes)",
        )

    def addr_of(url: str) -> tuple[str, int] | None:
        m = re.fullmatch(r"redis://(\d+\.\d+\.\d+\.\d+):(\d+)", url)
        return (m.group(1), int(m.group(2))) if m else None

    by_ip = {ip: s for s, ip in ips.items()}
    wait = (st.get("durability") or {}).get("wait_replicas", 0)
    mode = st.get("mode")
    if mode == "sentinel":
        replicas = {s for s in data if "replicaof" in command_text(redis[s])}
        masters = data - replicas
        C.check(
            (len(masters), len(replicas), len(sentinels)) == (1, 2, 3),
            f"{name}: sentinel group is {len(masters)} master, {len(replicas)} replicas, "
            f"{len(sentinels)} sentinels; want 1, 2, 3",
        )
        urls = st.get("sentinels") or []
        C.check(len(urls) == len(sentinels), f"{name}: storage lists {len(urls)} sentinels, compose runs {len(sentinels)}")
        for u in urls:
            a = addr_of(u)
            C.check(
                a is not None and by_ip.get(a[0]) in sentinels and a[1] == 26379,
                f"{name}: sentinel URL {u} is not a sentinel service of this file",
            )
        for s in sentinels:
            m = re.search(r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", command_text(redis[s]))
            if C.check(m is not None, f"{name}: {s} monitors no master"):
                C.check(m.group(1) == st.get("master_name"), f"{name}: {s} monitors {m.group(1)}, storage wants {st.get('master_name')}")
                C.check(by_ip.get(m.group(2)) in masters, f"{name}: {s} monitors {m.group(2)}, not the master")
        for s in replicas:
            m = re.search(r"replicaof (\S+) (\d+)", command_text(redis[s]))
            C.check(m is not None and by_ip.get(m.group(1)) in masters, f"{name}: {s} does not replicate the master")
        C.check(1 <= wait <= len(replicas), f"{name}: durability.wait_replicas {wait}, want 1..{len(replicas)}")
    elif mode == "cluster":
        nodes = {s for s in data if "--cluster-enabled" in command_text(redis[s])}
        C.check(len(nodes) == 6 and nodes == data, f"{name}: want 6 cluster-enabled nodes, found {sorted(nodes)}")
        C.check(len(oneshot) == 1, f"{name}: want one service running redis-cli --cluster create")
        for s in oneshot:
            text = command_text(redis[s])
            C.check("--cluster-replicas 1" in text, f"{name}: {s} does not create 1 replica per master")
            C.check(str(redis[s].get("restart", "no")) == "no", f"{name}: {s} must not restart")
            for node in nodes:
                C.check(ips.get(node, "?") in text, f"{name}: {s} does not include {node}")
        for u in st.get("seeds") or []:
            a = addr_of(u)
            C.check(a is not None and by_ip.get(a[0]) in nodes and a[1] == 6379, f"{name}: seed {u} is not a cluster node of this file")
        C.check(bool(st.get("seeds")), f"{name}: storage has no seeds")
        C.check(wait == 1, f"{name}: durability.wait_replicas {wait}, want 1 (one replica per master)")
    else:
        C.check(False, f"{name}: storage mode {mode}, want sentinel or cluster")


# ---- optional: run coffer-init for real ----------------------------------------------------


def init_smoke(binary: Path, path: Path, info: dict) -> None:
    name = rel(path)
    init = next(v for v in info["services"].values() if "coffer-init" in json.dumps(v.get("entrypoint", "")))
    env = dict(os.environ)
    env.update(as_list_env(init.get("environment")))
    with tempfile.TemporaryDirectory(prefix="coffer-init-smoke-") as tmp:
        env["COFFER_INIT_OUT"] = str(Path(tmp) / "cluster")
        env["COFFER_NODE"] = str(binary)
        for attempt in (1, 2):
            r = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
            if not C.check(r.returncode == 0, f"{name}: coffer-init run {attempt} failed: {r.stderr.strip()}"):
                return
        C.check("nothing to do" in r.stdout, f"{name}: second coffer-init run did not skip: {r.stdout.strip()}")
        out = Path(env["COFFER_INIT_OUT"])
        peer_ips = env["COFFER_INIT_PEER_IPS"].split()
        cluster = json.loads((out / "cluster.json").read_text())
        for k, ip in enumerate(peer_ips):
            cfg_text = (out / f"replica{k}" / "config.toml").read_text()
            cfg = tomllib.loads(cfg_text)
            addrs = sorted(p["address"] for p in cfg["peers"])
            want = sorted(f"{p}:{env['COFFER_INIT_P2P_PORT']}" for p in peer_ips)
            C.check(addrs == want, f"{name}: replica{k} peers {addrs}, want {want}")
            st = cfg["storage"]
            C.check(
                st.get("prefix") == f"coffer:{cluster['chain_id']}:replica{k}",
                f"{name}: replica{k} storage prefix {st.get('prefix')}",
            )
            tmpl = tomllib.loads(env["COFFER_INIT_STORAGE"].replace("@PREFIX@", st.get("prefix", "")))
            C.check(st == tmpl, f"{name}: replica{k} [storage] is {st}, want {tmpl}")
            health = json.loads((out / f"replica{k}" / "health.json").read_text())
            rep = next(r for r in cluster["replicas"] if r["name"] == f"replica{k}")
            C.check(
                health["f"] == 0
                and health["chain_id"] == cluster["chain_id"]
                and health["replicas"][0]["public_key"] == rep["public_key"]
                and (out / f"replica{k}" / health["ca_cert"]).exists(),
                f"{name}: replica{k}/health.json does not match cluster.json",
            )
            C.check(
                rep["url"] == f"https://127.0.0.1:{int(env['COFFER_INIT_BASE_PORT']) + k}",
                f"{name}: cluster.json url of replica{k} is {rep['url']}",
            )


def main(argv: list[str]) -> int:
    smoke = None
    if len(argv) == 2 and argv[0] == "--init-smoke":
        smoke = Path(argv[1]).resolve()
    elif argv:
        print(__doc__, file=sys.stderr)
        return 2
    df = check_dockerfile()
    r = subprocess.run(["sh", "-n", str(INIT_SCRIPT)], capture_output=True, text=True)
    C.check(r.returncode == 0, f"docker/coffer-init.sh: sh -n: {r.stderr.strip()}")
    try:
        compile((DOCKER / "rehearse.py").read_text(), "docker/rehearse.py", "exec")
        C.check(True, "")
    except (OSError, SyntaxError) as e:
        C.check(False, f"docker/rehearse.py: {e}")
    # The coffer-node interface the image relies on, once the binary has subcommands.
    bin_src = ROOT / "node/src/bin/coffer-node.rs"
    if bin_src.exists() and '"testnet"' in bin_src.read_text():
        text = bin_src.read_text()
        for flag in ("--replicas", "--out", "--base-port", "--host", "--home"):
            C.check(f'"{flag}"' in text, f"node/src/bin/coffer-node.rs no longer takes {flag} (coffer-init/compose use it)")
        C.check("P2P_PORT_OFFSET: u16 = 100" in (ROOT / "node/src/testnet.rs").read_text()
                if (ROOT / "node/src/testnet.rs").exists() else False,
                "node/src/testnet.rs: p2p port offset is no longer 100 (GEN_P2P_OFFSET in coffer-init)")
    documented, source = node_env()
    documented |= env_names(CLI_ENV_SOURCES) & {"COFFER_CLUSTER"}
    documented |= set(re.findall(r"\bCOFFER_[A-Z0-9_]+\b", DOCKERFILE.read_text())) if DOCKERFILE.exists() else set()
    seen_ports: dict = {}
    names = set()
    for path in COMPOSE_FILES:
        info = check_compose(path, df, documented, source, seen_ports)
        if not info:
            continue
        C.check(info["doc"].get("name") not in names, f"{rel(path)}: project name reused")
        names.add(info["doc"].get("name"))
        check_coffer_topology(path, info, df, documented, source)
        if smoke is not None:
            init_smoke(smoke, path, info)
    for f in C.failures:
        print(f"FAIL {f}", file=sys.stderr)
    print(f"docker checks: {C.passed} passed, {len(C.failures)} failed")
    return 1 if C.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
