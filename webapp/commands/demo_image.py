"""`nsgraph demo-image`: make sure the image the demos run is available locally.

Prints the image reference on stdout (so `IMG=$(nsgraph demo-image --quiet)` works)
and the slow steps on stderr. Exit 0 when the image is ready, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from tracer.exitcodes import EXIT_FAILURE, EXIT_OK

from ..demos import image as demoimage

HELP = "make sure the demo container image exists (local alpine, else built from busybox)"
EPILOG = """\
No registry is needed: when no local `alpine` image exists, nsgraph-demo:latest is
built from the host's /bin/busybox (apt-get install busybox-static) and imported.

examples:
  nsgraph demo-image                 # use alpine or build nsgraph-demo:latest
  nsgraph demo-image --rebuild       # rebuild nsgraph-demo:latest and check it
  IMG=$(nsgraph demo-image --quiet)  # the image reference, for scripts
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo-image", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quiet", "-q", action="store_true", help="print only the image reference")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild the busybox image even if it is current (ignores a local alpine)")
    p.add_argument("--tag", metavar="TAG", default=None,
                   help="build/use the busybox image under TAG (default %s; ignores a local alpine)"
                        % demoimage.DEFAULT_TAG)
    p.add_argument("--check", action="store_true",
                   help="run the seed demos against the image even when nothing was built")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    def progress(msg: str) -> None:
        if not args.quiet:
            print("demo-image: " + msg, file=sys.stderr, flush=True)

    try:
        import docker
    except ImportError:
        print("demo-image: the Docker SDK is missing: .venv/bin/pip install -e . (package `docker`)",
              file=sys.stderr)
        return EXIT_FAILURE
    from tracer.containers.docker_client import WORK_TIMEOUT, docker_client
    try:
        client = docker_client(WORK_TIMEOUT, ping=True)
    except Exception as exc:
        print("demo-image: Docker engine not reachable (%s).\n"
              "start dockerd: `dockerd >/var/log/dockerd.log 2>&1 &` (or `systemctl start docker`), "
              "or point DOCKER_HOST at a running engine" % _first_line(exc), file=sys.stderr)
        return EXIT_FAILURE
    try:
        built_ref = args.tag or demoimage.DEFAULT_TAG
        before = demoimage.image_id(client, built_ref)
        image = demoimage.ensure_demo_image(
            client, progress, rebuild=args.rebuild, tag=args.tag,
            prefer_alpine=not (args.rebuild or args.tag))
        # Check what was just built (or on request); an unchanged image was checked when built.
        if args.check or (image == built_ref and demoimage.image_id(client, built_ref) != before):
            demoimage.check_demo_image(client, image, progress)
    except demoimage.DemoImageError as exc:
        print("demo-image: %s" % exc, file=sys.stderr)
        return EXIT_FAILURE
    except docker.errors.DockerException as exc:
        print("demo-image: Docker failed: %s\n(see the dockerd log, e.g. /var/log/dockerd.log)"
              % _first_line(exc), file=sys.stderr)
        return EXIT_FAILURE
    finally:
        client.close()
    print(image)
    return EXIT_OK


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
