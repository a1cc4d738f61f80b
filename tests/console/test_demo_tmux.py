"""`llmconsole demo` in a real terminal (tmux): the console opens on the SIMULATED fleet, shows its hosts,
engines and the scripted incidents, answers keys, and quitting it leaves no process and no work dir."""

from __future__ import annotations

import contextlib
import importlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXIT_MARK = "DEMO-EXIT="


def _tmux() -> str | None:
    found = shutil.which("tmux")
    if found or not shutil.which("apt-get") or os.geteuid() != 0:
        return found
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "tmux"], capture_output=True, timeout=300, check=False
        )
    return shutil.which("tmux")


def _console_ui_error() -> str | None:
    try:
        importlib.import_module("console.launch")
    except ImportError as exc:
        return str(exc)
    return None


def _demo_pids(workdir: Path) -> set[int]:
    """Processes whose environment names the work dir: the demo's agents, engines and workers (not the
    pane's shell, whose command line names it too)."""
    needle = str(workdir).encode()
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        if needle in blob:
            found.add(int(entry.name))
    return found


class Pane:
    def __init__(self, tmux: str, socket: str) -> None:
        self.base = [tmux, "-L", socket]

    def tmux(self, *args: str) -> str:
        # An explicit environment: under pytest, children otherwise see COLUMNS=80/LINES=24, which Textual
        # (through shutil.get_terminal_size) prefers to the pane's real size.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        return subprocess.run(
            [*self.base, *args], capture_output=True, text=True, timeout=10, check=False, env=env
        ).stdout

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "demo")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "demo", *keys)

    def wait(self, what: str, cond: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if cond(text):
                return text
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{text}")


@pytest.fixture
def terminal(tmp_path: Path):
    """A tmux pane factory: ``terminal(hosts)`` runs the demo in a 200x50 pane; (pane, workdir)."""
    ui_error = _console_ui_error()
    if ui_error is not None:
        pytest.skip(f"console UI not available ({ui_error})")
    tmux = _tmux()
    if tmux is None:
        pytest.skip("tmux is not installed and could not be installed with apt-get")
    workdir = tmp_path / "ui"
    pane = Pane(tmux, f"llmc-demo-test-{os.getpid()}")

    def start(hosts: int) -> tuple[Pane, Path]:
        script = Path(sys.executable).parent / "llmconsole"
        demo = [str(script)] if script.exists() else [sys.executable, "-m", "console.cli"]
        argv = [*demo, "demo", "--fast", "--hosts", str(hosts), "--workdir", str(workdir)]
        command = f"unset COLUMNS LINES; cd {shlex.quote(str(ROOT))} && {shlex.join(argv)}; echo {EXIT_MARK}$?; sleep 600"
        pane.tmux("new-session", "-d", "-s", "demo", "-x", "200", "-y", "50", command)
        return pane, workdir

    try:
        yield start
    finally:
        pane.tmux("kill-server")
        for pid in _demo_pids(workdir):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def assert_all_gone(workdir: Path, ours: set[int]) -> None:
    deadline = time.monotonic() + 3
    while _demo_pids(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _demo_pids(workdir), "a process of the demo is still running"
    assert not any(Path(f"/proc/{pid}").exists() for pid in ours), "a process (or zombie) of the demo remains"
    assert not workdir.exists()


def test_demo_console_in_a_real_terminal(terminal) -> None:
    pane, workdir = terminal(2)
    # the fleet: both hosts, an engine of every dialect, labelled SIMULATED
    text = pane.wait(
        "the fleet on screen",
        lambda t: all(
            s in t for s in ("demo-gpu01", "demo-gpu02", "llama-70b", "deepseek-v2", "llama-kv", "SIMULATED")
        ),
        timeout=90,
    )
    for kind in ("vllm", "sglang", "tgi"):
        assert kind in text
    # the scripted incidents, raised by the agents, shown by the console
    pane.wait("the hang and the crash loop", lambda t: "ENGINE_HUNG" in t and "CRASH_LOOP" in t, timeout=90)
    ours = _demo_pids(workdir)
    assert len(ours) >= 2 + 7, f"2 agents and 7 engines expected, found {len(ours)} processes"

    pane.keys("?")
    pane.wait("the help screen", lambda t: "keys" in t.lower() and "Quit" in t, timeout=15)
    pane.keys("Escape")
    pane.wait("the fleet again", lambda t: "keys" not in t.lower() and "demo-gpu02" in t, timeout=15)

    pane.keys("q")
    text = pane.wait("the demo to exit", lambda t: EXIT_MARK in t, timeout=30)
    assert f"{EXIT_MARK}0" in text, text
    assert_all_gone(workdir, ours)


def _demo_process(workdir: Path) -> int:
    """The demo's own process: a Python whose command line is `... demo ... --workdir WORKDIR`."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
            if (
                b"demo" in argv
                and str(workdir).encode() in argv
                and Path(argv[0].decode()).name.startswith("python")
            ):
                return int(entry.name)
    raise AssertionError("the demo process was not found")


def test_sigterm_while_the_console_runs_restores_the_terminal_and_stops_everything(terminal) -> None:
    pane, workdir = terminal(1)
    pane.wait("the fleet on screen", lambda t: "demo-gpu01" in t and "llama-70b" in t, timeout=90)
    assert pane.tmux("display", "-p", "-t", "demo", "#{alternate_on}").strip() == "1"
    ours = _demo_pids(workdir)
    assert ours
    os.kill(_demo_process(workdir), signal.SIGTERM)
    text = pane.wait("the demo to exit", lambda t: EXIT_MARK in t, timeout=30)
    assert f"{EXIT_MARK}{128 + signal.SIGTERM}" in text, text
    # Textual left the alternate screen, turned mouse reporting off and showed the cursor again
    assert pane.tmux(
        "display", "-p", "-t", "demo", "#{alternate_on} #{mouse_any_flag} #{cursor_flag}"
    ).split() == ["0", "0", "1"]
    assert_all_gone(workdir, ours)
