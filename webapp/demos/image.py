"""The container image the demos run: local `alpine` if present, else a busybox image built here.

No registry is reachable where nsgraph is developed and CI runs, so nothing is
pulled: the fallback image is a root file system holding the host's static
busybox and its applet links, imported with the Docker SDK from an in-memory tar.
The image carries a fingerprint label (recipe version + busybox hash) so that
ensure_demo_image() is a no-op when the image already matches, and rebuilds it
when the host's busybox or this recipe changed.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import time
import uuid
from typing import Callable, Optional

from tracer.nstypes import CONTAINER_TYPES

from .scenarios import DEMO_LABEL

DEFAULT_TAG = "nsgraph-demo:latest"
BUSYBOX_PATH = "/bin/busybox"
LABEL = DEMO_LABEL
FINGERPRINT_LABEL = DEMO_LABEL + ".fingerprint"
# Bump when the rootfs layout below changes: the fingerprint then differs and
# existing images are rebuilt.
RECIPE_VERSION = "1"

# Applets the demos (and their checks) use; the build fails if busybox lacks one.
REQUIRED_APPLETS = ("sh", "ls", "ps", "hostname", "ip", "sleep", "cat", "echo", "id",
                    "top", "ifconfig", "mount", "readlink", "grep", "uname", "env")
# Where each required applet goes when `busybox --list-full` is unavailable.
_SBIN_APPLETS = {"ip", "ifconfig"}

PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
           "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
           "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
_GROUP = "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n"
_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
# A fixed mtime keeps the tar (and so the image content) reproducible.
_MTIME = 1_700_000_000

Progress = Callable[[str], None]


class DemoImageError(RuntimeError):
    """The demo image cannot be provided; the message says how to fix it."""


def _noop(_msg: str) -> None:
    pass


def find_local_alpine(client, repo: str = "alpine") -> Optional[str]:
    """A local tag of `repo` (`alpine:latest` first, else e.g. `alpine:3.20`), or None."""
    try:
        images = client.images.list(name=repo)
    except Exception:
        return None
    tags = sorted(t for img in images for t in (img.tags or []) if split_tag(t)[0] == repo)
    if repo + ":latest" in tags:
        return repo + ":latest"
    return tags[0] if tags else None


def busybox_fingerprint(busybox: str = BUSYBOX_PATH) -> str:
    h = hashlib.sha256(("recipe-%s\n" % RECIPE_VERSION).encode())
    with open(busybox, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:24]


def _check_busybox(busybox: str) -> None:
    if not os.path.isfile(busybox):
        raise DemoImageError(
            "%s not found: the demo image is built from the host's static busybox "
            "(no registry is reachable); install it with `apt-get install busybox-static`" % busybox)
    if not os.access(busybox, os.X_OK):
        raise DemoImageError("%s is not executable (chmod 755 %s)" % (busybox, busybox))


def applet_paths(busybox: str = BUSYBOX_PATH) -> list[str]:
    """Relative install paths of every applet (`bin/ls`, `sbin/ip`, ...)."""
    try:
        out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
        paths = [p.strip().lstrip("/") for p in out.splitlines() if p.strip()]
    except (subprocess.SubprocessError, OSError):
        paths = []
    if not paths:  # busybox built without --list-full: only the applets we need
        try:
            out = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout
            names = [n.strip() for n in out.splitlines() if n.strip()]
        except (subprocess.SubprocessError, OSError) as exc:
            raise DemoImageError("cannot list the applets of %s (%s); reinstall it with "
                                 "`apt-get install --reinstall busybox-static`" % (busybox, exc))
        paths = [("sbin/" if n in _SBIN_APPLETS else "bin/") + n for n in names]
    # Applet names are single path components; anything else is ignored rather
    # than written into the tar.
    safe = [p for p in paths if ".." not in p.split("/") and p.count("/") <= 2 and p != "bin/busybox"]
    have = {p.rsplit("/", 1)[-1] for p in safe}
    missing = [a for a in REQUIRED_APPLETS if a not in have]
    if missing:
        raise DemoImageError("%s lacks applets the demos need: %s; install Debian's "
                             "`busybox-static`, which has them" % (busybox, ", ".join(missing)))
    return sorted(set(safe))


def build_rootfs_tar(busybox: str = BUSYBOX_PATH) -> bytes:
    """A tar of the demo root file system, built in memory."""
    _check_busybox(busybox)
    applets = applet_paths(busybox)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, _MTIME
            tar.addfile(ti)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, _MTIME
            tar.addfile(ti, io.BytesIO(data))

        dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev",
                "root", "var", "var/run", "run"}
        dirs.update(p.rsplit("/", 1)[0] for p in applets if "/" in p)
        for d in sorted(dirs):
            add_dir(d, 0o700 if d == "root" else 0o755)
        add_dir("tmp", 0o1777)
        with open(busybox, "rb") as f:
            add_file("bin/busybox", f.read(), 0o755)
        for path in applets:
            ti = tarfile.TarInfo(path)
            ti.type, ti.mode, ti.mtime = tarfile.SYMTYPE, 0o777, _MTIME
            ti.linkname = "/bin/busybox"
            tar.addfile(ti)
        add_file("etc/passwd", _PASSWD.encode())
        add_file("etc/group", _GROUP.encode())
        add_file("etc/hosts", _HOSTS.encode())
    return buf.getvalue()


def split_tag(ref: str) -> tuple[str, str]:
    """`repo[:tag]` -> (repo, tag); a registry port (`host:5000/x`) is not a tag."""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = ref.rpartition(":")
        return repo, tag
    return ref, "latest"


def image_id(client, ref: str) -> Optional[str]:
    import docker.errors
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def _remove_if_dangling(client, old_id: Optional[str]) -> None:
    """Remove the image a rebuild replaced, unless something still tags or runs it."""
    import docker.errors
    if not old_id:
        return
    try:
        if client.images.get(old_id).tags:
            return
        client.images.remove(old_id, noprune=False)
    except docker.errors.APIError:
        pass  # a container still uses it (409) or it is already gone: leave it to `docker image prune`


def _image_labels(client, ref: str) -> Optional[dict]:
    import docker.errors
    try:
        img = client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    return (img.attrs.get("Config") or {}).get("Labels") or {}


def build_demo_image(client, tag: str = DEFAULT_TAG, progress: Progress = _noop,
                     busybox: str = BUSYBOX_PATH) -> str:
    """Build and import the busybox image under `tag`; returns `tag`."""
    repo, version = split_tag(tag)
    fingerprint = busybox_fingerprint(busybox) if os.path.isfile(busybox) else ""
    progress("building the demo root file system from %s" % busybox)
    data = build_rootfs_tar(busybox)
    progress("importing %s (%.1f MB) into Docker" % (tag, len(data) / 1e6))
    changes = [
        "LABEL %s=1" % LABEL,
        "LABEL %s=%s" % (FINGERPRINT_LABEL, fingerprint),
        "ENV PATH=%s" % PATH_ENV,
        'CMD ["sh"]',
    ]
    t0 = time.monotonic()
    replaced = image_id(client, tag)
    client.api.import_image_from_data(data, repository=repo, tag=version, changes=changes)
    _remove_if_dangling(client, replaced)
    labels = _image_labels(client, tag)
    if not labels or labels.get(FINGERPRINT_LABEL) != fingerprint:
        raise DemoImageError("Docker imported %s but the image lacks its labels (%r); "
                             "check `docker image inspect %s` and the dockerd log" % (tag, labels, tag))
    progress("imported %s in %.1f s" % (tag, time.monotonic() - t0))
    return tag


def demo_image_status(client, tag: str = DEFAULT_TAG, busybox: str = BUSYBOX_PATH) -> str:
    """"missing", "current" or "stale" for the busybox demo image under `tag`."""
    labels = _image_labels(client, tag)
    if labels is None:
        return "missing"
    if not os.path.isfile(busybox):
        # Nothing to rebuild from: an image we built earlier is the best there is.
        return "current" if labels.get(LABEL) == "1" else "stale"
    return "current" if labels.get(FINGERPRINT_LABEL) == busybox_fingerprint(busybox) else "stale"


def ensure_demo_image(client, progress: Progress = _noop, *, rebuild: bool = False,
                      tag: Optional[str] = None, prefer_alpine: bool = True,
                      busybox: str = BUSYBOX_PATH, alpine_repo: str = "alpine") -> str:
    """The image reference the demos should use, building it if needed.

    A local `alpine` wins unless a tag or a rebuild was asked for; otherwise the
    busybox image under `tag` (default nsgraph-demo:latest) is built when missing,
    stale (other busybox, other recipe) or when `rebuild` is true.
    """
    if prefer_alpine and not rebuild and tag is None:
        alpine = find_local_alpine(client, alpine_repo)
        if alpine:
            progress("using the local image %s" % alpine)
            return alpine
    tag = tag or DEFAULT_TAG
    state = "rebuild requested" if rebuild else demo_image_status(client, tag, busybox)
    if state == "current":
        progress("%s is up to date" % tag)
        return tag
    progress("%s: %s, building it" % (tag, state))
    return build_demo_image(client, tag, progress, busybox)


# --- checking that the image runs the seed demos -------------------------------------

def _run(client, image: str, command, name: str) -> str:
    """`docker run --rm IMAGE COMMAND` and its output; raises DemoImageError on failure."""
    import docker.errors
    try:
        out = client.containers.run(image, command, name=name, remove=True,
                                    labels={LABEL + ".check": "1"}, stdout=True, stderr=True)
    except docker.errors.ContainerError as exc:
        raise DemoImageError("`docker run --rm %s %s` failed (exit %s): %s" % (
            image, _show(command), exc.exit_status, (exc.stderr or b"").decode(errors="replace").strip()))
    return out.decode(errors="replace")


def _show(command) -> str:
    return command if isinstance(command, str) else " ".join(
        ('"%s"' % c) if " " in c else c for c in command)


def check_demo_image(client, image: str, progress: Progress = _noop,
                     name_prefix: str = "nsgraph-check") -> dict:
    """Run the three seed demos against `image`; returns their outputs.

    Raises DemoImageError (with the command and its output) when one does not
    behave: the namespace links, hostname/ip/ps, and `docker exec NAME ps aux`
    listing the container's own processes.
    """
    import docker.errors
    suffix = uuid.uuid4().hex[:8]
    results = {}

    progress("checking: docker run --rm %s ls -la /proc/self/ns/" % image)
    out = _run(client, image, ["ls", "-la", "/proc/self/ns/"], "%s-ns-%s" % (name_prefix, suffix))
    for ns in CONTAINER_TYPES:
        if "%s:[" % ns not in out:
            raise DemoImageError("`ls -la /proc/self/ns/` in %s does not list the %s namespace:\n%s"
                                 % (image, ns, out))
    results["ls_ns"] = out

    progress('checking: docker run --rm %s sh -c "hostname; ip addr; ps aux"' % image)
    out = _run(client, image, ["sh", "-c", "hostname; ip addr; ps aux"], "%s-sh-%s" % (name_prefix, suffix))
    lines = out.splitlines()
    if not lines or not lines[0].strip() or "lo" not in out or "PID" not in out:
        raise DemoImageError('`sh -c "hostname; ip addr; ps aux"` in %s gave unexpected output:\n%s'
                             % (image, out))
    results["sh"] = out

    name = "%s-exec-%s" % (name_prefix, suffix)
    progress("checking: docker exec %s ps aux" % name)
    container = client.containers.run(image, ["sleep", "600"], name=name, detach=True,
                                      labels={LABEL + ".check": "1"})
    try:
        res = container.exec_run(["ps", "aux"])
        out = res.output.decode(errors="replace")
        if res.exit_code != 0:
            raise DemoImageError("`docker exec %s ps aux` failed (exit %s): %s" % (name, res.exit_code, out))
        procs = _ps_commands(out)
        # In its own pid namespace the container's ps sees only `sleep 600` (pid 1)
        # and itself; seeing more means the pid namespace is not the container's.
        if procs.get(1) != "sleep 600" or not any(c.startswith("ps") for c in procs.values()) \
                or len(procs) != 2:
            raise DemoImageError("`docker exec %s ps aux` did not list the container's processes "
                                 "(pid 1 `sleep 600` and ps itself):\n%s" % (name, out))
        results["exec_ps"] = out
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    progress("%s runs the seed demos" % image)
    return results


def _ps_commands(out: str) -> dict[int, str]:
    """pid -> command from busybox or procps `ps aux` output (header-driven)."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if not lines:
        return {}
    header = lines[0].split()
    try:
        pid_col = header.index("PID")
        cmd_col = next(i for i, h in enumerate(header) if h in ("COMMAND", "CMD"))
    except (ValueError, StopIteration):
        return {}
    procs = {}
    for ln in lines[1:]:
        parts = ln.split(None, cmd_col)
        if len(parts) <= cmd_col:
            continue
        try:
            procs[int(parts[pid_col])] = parts[cmd_col].strip()
        except ValueError:
            continue
    return procs
