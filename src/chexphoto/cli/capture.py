"""Sub-commands for the capture area: ``capture`` (the controller) and ``camera`` (the phone side)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from chexphoto.cli.common import CommandError

TOKEN_ENV = "CHEXPHOTO_CAPTURE_TOKEN"


def register(sub) -> None:
    """Add this area's sub-commands to the chexphoto parser."""
    p = sub.add_parser(
        "capture",
        help="show x-rays on a screen and have a camera photograph each one (the controller)",
        description=(
            "Show each CSV row's x-ray letterboxed on a screen, trigger the camera once the frame is "
            "painted and advance only when the camera confirmed the photo of this x-ray. Row r is sent "
            "as sequence number r, so start the camera with --start-seq equal to the first row. When "
            "the run stops for any reason the exact --rows to resume from is printed."
        ),
    )
    p.add_argument("--csv", required=True, help="CheXpert-format CSV (Path column)")
    p.add_argument("--data-root", required=True, help="folder the CSV's Path values are relative to")
    p.add_argument("--rows", required=True, metavar="START:END",
                   help="0-based data rows to capture, END exclusive (END may be omitted: to the end)")
    p.add_argument("--camera", required=True, metavar="CAMERA",
                   help="udp://HOST:PORT (a CheXpeditor app or `chexphoto camera`) or manual")
    p.add_argument("--display", required=True, metavar="DISPLAY",
                   help="web (a full-screen page at a printed local address) or file:PATH")
    p.add_argument("--screen", default="1920x1080", metavar="WxH", help="screen size in pixels (default 1920x1080)")
    p.add_argument("--timeout", type=float, default=3.0, metavar="S",
                   help="seconds to wait for the camera before resending (default 3)")
    p.add_argument("--retries", type=int, default=10, metavar="N",
                   help="stop after N timed-out attempts on one row (default 10)")
    p.add_argument("--max-unconfirmed", type=int, default=5, metavar="N",
                   help="stop after N rows in a row ended with MISMATCH and no OK (default 5)")
    p.add_argument("--token", default=None, metavar="T",
                   help=f"shared secret: authenticate every message with HMAC-SHA256 (or set {TOKEN_ENV})")
    p.add_argument("--delay", type=int, default=0, metavar="MS",
                   help="manual mode: advance every MS milliseconds (0: on key press / click on the web page)")
    p.add_argument("--log", default=None, metavar="PATH",
                   help="manual mode: log of when each row was on screen "
                        "(default capture-log-YYYYmmdd-HHMMSS.csv in the current folder)")
    p.add_argument("--paint-timeout", type=float, default=120.0, metavar="S",
                   help="stop if the display has not shown a frame within S seconds (default 120)")
    p.add_argument("--web-host", default="127.0.0.1", help="address the web display listens on (default 127.0.0.1)")
    p.add_argument("--web-port", type=int, default=0, help="port of the web display (default: any free port)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_capture)

    p = sub.add_parser(
        "camera",
        help="serve as the CheXpeditor camera: take a photo per UDP request (virtual or real camera)",
        description=(
            "A Python implementation of the CheXpeditor phone app: answers `{seq}|{filename}` requests, "
            "photographs only the expected sequence number and saves the photo as the filename into the "
            "export folder (nothing is written anywhere else)."
        ),
    )
    p.add_argument("--port", type=int, required=True, metavar="P", help="UDP port to listen on (0: any free port)")
    p.add_argument("--export", required=True, metavar="DIR", help="folder the photos are saved into")
    p.add_argument("--start-seq", type=int, required=True, metavar="N",
                   help="first sequence number to accept (= the controller's first --rows row)")
    p.add_argument("--source", required=True, metavar="SOURCE",
                   help="virtual:PATH (photograph the frame file of --display file:PATH) or device:K (OpenCV camera K)")
    p.add_argument("--token", default=None, metavar="T", help=f"shared secret (or set {TOKEN_ENV})")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0: all interfaces)")
    p.add_argument("--seed", type=int, default=0, help="seed of the virtual camera (default 0)")
    p.add_argument("--save-delay", default=None, metavar="S[:FRACTION]", help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="do not print a line per request")
    p.set_defaults(func=_camera)

    # hidden helper: rehearse a bad network between a controller and a camera
    p = sub.add_parser("capture-relay", description="Fault-injecting UDP relay (drop, duplicate, reorder, delay).")
    p.add_argument("--port", type=int, required=True, help="UDP port the controller sends to (0: any)")
    p.add_argument("--target", required=True, metavar="HOST:PORT", help="the camera")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--drop", type=float, default=0.0, help="loss probability, each direction")
    p.add_argument("--duplicate", type=float, default=0.0, help="duplication probability, each direction")
    p.add_argument("--reorder", type=float, default=0.0, help="probability a datagram is held back")
    p.add_argument("--delay-ms", type=float, default=0.0, help="maximum random delay")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_relay)


def _token(args) -> str | None:
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if token is not None and not token:
        raise CommandError("--token must not be empty")
    return token


@contextlib.contextmanager
def _stop_on_sigterm():
    """Treat SIGTERM like Ctrl-C while running, so a killed run still prints where to resume."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _capture(args) -> int:
    from datetime import datetime

    from chexphoto.capture import controller
    from chexphoto.capture.displays import open_display, parse_screen
    from chexphoto.csvschema import read_csv
    from chexphoto.progress import make_progress

    camera_address = controller.parse_camera(args.camera)
    manual = camera_address is None
    settings = controller.CaptureSettings(
        screen=parse_screen(args.screen), timeout=args.timeout, retries=args.retries,
        max_unconfirmed=args.max_unconfirmed, token=_token(args), delay_ms=args.delay,
        paint_timeout=args.paint_timeout if args.paint_timeout > 0 else None,
    )
    if manual and args.display != "web" and args.delay <= 0:
        raise CommandError("--camera manual with a file display needs --delay MS (there is no key to press)")
    if not manual and (args.delay or args.log):
        raise CommandError("--delay and --log are for --camera manual")
    df = read_csv(args.csv)
    start, end = controller.parse_rows(args.rows, len(df))
    plan = controller.plan_rows(list(df["Path"]), args.data_root, start, end)

    display = open_display(args.display, manual=manual, host=args.web_host, port=args.web_port)
    log = camera = None
    try:
        if display.address and args.display == "web":
            print(f"display: open {display.address} in a full-screen browser on the screen the camera sees",
                  flush=True)
        if manual:
            log_path = args.log or f"capture-log-{datetime.now():%Y%m%d-%H%M%S}.csv"
            log = controller.ShowLog(log_path)
            print(f"manual capture: logging what is on screen to {log_path}", flush=True)
        else:
            camera = controller.UdpCameraLink(*camera_address)
            print(f"camera: {args.camera}, rows {start}:{end} (sequence numbers {start}..{end - 1})", flush=True)
        progress = make_progress(unit="photos", per="min", disable=True if args.quiet else None)
        with progress, _stop_on_sigterm():
            report = controller.run_capture(plan, display, camera, settings, log=log, progress=progress, end=end)
    finally:
        if camera is not None:
            camera.close()
        if log is not None:
            log.close()
        display.close()
    for line in report.summary():
        print(line, flush=True)
    return report.exit_code


def _camera(args) -> int:
    from datetime import datetime

    from chexphoto.capture.camera_server import CameraServer, open_source, parse_save_delay

    token = _token(args)
    save_delay = parse_save_delay(args.save_delay) if args.save_delay else (0.0, 0.0)

    def log(message: str) -> None:
        if not args.quiet:
            print(f"{datetime.now():%H:%M:%S.%f}"[:-3] + f" {message}", flush=True)

    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be between 0 and 65535, got {args.port}")
    export = os.path.abspath(args.export)
    if os.path.exists(export) and not os.path.isdir(export):
        raise CommandError(f"--export {args.export} exists and is not a folder")
    try:
        os.makedirs(export, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create the export folder {args.export}: {exc.strerror or exc}") from None
    source = open_source(args.source, seed=args.seed)
    try:
        server = CameraServer(args.export, args.start_seq, source, host=args.host, port=args.port, token=token,
                              save_delay=save_delay, seed=args.seed, log=log)
    except OSError as exc:
        source.close()
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    host, port = server.address
    print(f"camera: listening on udp://{host}:{port}, expecting seq {args.start_seq}, saving into {args.export}",
          flush=True)
    if token is None and host not in ("127.0.0.1", "::1"):
        print("camera: warning: no --token; anyone on the network can trigger photos", file=sys.stderr, flush=True)
    try:
        with _stop_on_sigterm():
            server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"camera: stopped after {server.photos_taken} photos; next expected seq {server.expected}", flush=True)
    return 0


def _relay(args) -> int:
    from chexphoto.capture.relay import Faults, FaultyRelay

    host, sep, port_text = args.target.rpartition(":")
    if not sep or not port_text.isdigit():
        raise CommandError(f"--target must be HOST:PORT, got {args.target!r}")
    faults = Faults(drop=args.drop, duplicate=args.duplicate, reorder=args.reorder,
                    delay=(0.0, args.delay_ms / 1000))
    relay = FaultyRelay((host.strip("[]"), int(port_text)), up=faults, down=faults, seed=args.seed,
                        listen=(args.host, args.port)).start()
    listen_host, listen_port = relay.address
    print(f"relay: udp://{listen_host}:{listen_port} -> {args.target} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        relay.stop()
        print(f"relay: {relay.stats}", flush=True)
    return 0
