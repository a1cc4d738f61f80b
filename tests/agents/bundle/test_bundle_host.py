"""Host and engine facts for bundles (agents/bundle_host.py, agents/bundle_engine.py) on this machine's real
files and processes: kernel-log filtering and denial, driver/CUDA versions through NVML (the one mocked
boundary) or their absence, the process tree with GPU memory, and engine versions from package metadata."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from agents.bundle_engine import engine_versions, interpreter_of
from agents.bundle_host import driver_facts, host_facts, kernel_log, process_tree, running_process
from agents.schema import GpuInfo, GpuProcess, HostSnapshot


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_kernel_log_keeps_gpu_and_oom_lines_and_says_why_when_denied(tmp_path: Path) -> None:
    lines = [
        "[   12.3] usb 1-1: new device",
        "[  100.1] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus.",
        "[  101.0] nvidia-modeset: Loading NVIDIA Kernel Mode Setting Driver",
        "[  200.5] python3 invoked oom-killer: gfp_mask=0x140cca",
        "[  200.6] Out of memory: Killed process 4321 (python3) total-vm:1234kB",
        "[  300.0] eth0: link up",
    ]
    ok = _script(tmp_path / "dmesg-ok", "cat <<'EOF'\n" + "\n".join(lines) + "\nEOF\n")
    got, source, missing = kernel_log(dmesg=ok, files=())
    assert got == lines[1:5] and source == "dmesg" and missing == []
    denied = _script(
        tmp_path / "dmesg-denied",
        "echo 'dmesg: read kernel buffer failed: Operation not permitted' >&2; exit 1\n",
    )
    kern = tmp_path / "kern.log"
    kern.write_text("Jun  1 host kernel: NVRM: Xid 48 on GPU 0\nJun  1 host kernel: nothing\n")
    got, source, missing = kernel_log(dmesg=denied, files=(str(tmp_path / "absent.log"), str(kern)))
    assert got == ["Jun  1 host kernel: NVRM: Xid 48 on GPU 0"] and source == str(kern)
    assert missing[0][0] == "kernel log (dmesg)"
    assert missing[0][1].startswith("denied: dmesg: read kernel buffer failed: Operation not permitted")
    slow = _script(tmp_path / "dmesg-slow", "sleep 5\n")
    got, source, missing = kernel_log(0.3, dmesg=slow, files=())
    assert (
        got is None
        and source is None
        and missing == [("kernel log (dmesg)", "dmesg did not finish within 0.3s")]
    )


def test_driver_and_cuda_versions_through_nvml_or_why_not() -> None:
    nvml = SimpleNamespace(
        nvmlSystemGetDriverVersion=lambda: b"550.54.15",
        nvmlSystemGetCudaDriverVersion_v2=lambda: 12040,
        nvmlSystemGetNVMLVersion=lambda: "12.550.54.15",
    )
    facts, missing = driver_facts(SimpleNamespace(_nvml=nvml))
    assert facts == {
        "driver_version": "550.54.15",
        "cuda_driver_version": "12.4",
        "nvml_version": "12.550.54.15",
        "from": "nvml",
    }
    assert missing == []

    def broken() -> str:
        raise RuntimeError("Not Supported")

    facts, missing = driver_facts(SimpleNamespace(_nvml=SimpleNamespace(nvmlSystemGetDriverVersion=broken)))
    assert facts["driver_version"] is None and facts["cuda_driver_version"] is None
    assert ("GPU driver version", "NVML nvmlSystemGetDriverVersion: RuntimeError: Not Supported") in missing
    assert any(
        w == "GPU cuda driver version" and "no nvmlSystemGetCudaDriverVersion_v2" in why for w, why in missing
    )
    facts, missing = driver_facts(None)  # no NVML source: /proc/driver/nvidia/version, or why there is none
    if not Path("/proc/driver/nvidia/version").exists():
        assert facts["driver_version"] is None and "no NVIDIA driver found" in missing[0][1]


def test_host_facts_and_process_tree_of_real_processes() -> None:
    facts, _ = host_facts(None, None)
    assert facts["uname"]["release"] == os.uname().release and facts["cpu_count"] == os.cpu_count()
    assert facts["ram_total_bytes"] > 0 and facts["boot_time"]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        gpus = (
            GpuInfo(
                index=0,
                processes=(
                    GpuProcess(pid=child.pid, mem_bytes=5 * 2**30, engine_id="e1"),
                    GpuProcess(pid=os.getpid(), mem_bytes=2**30, engine_id=None),
                ),
            ),
        )
        snap = HostSnapshot(host="h", seq=1, taken_at="2026-01-01T00:00:00.000Z", gpus=gpus)
        tree = process_tree({"e1": (child.pid, 999_999_999)}, snap)
        rows = {r["pid"]: r for r in tree["engines"]["e1"]}
        assert rows[child.pid]["ppid"] == os.getpid() and rows[child.pid]["gpu_memory"] == [
            {"gpu": 0, "mem_bytes": 5 * 2**30}
        ]
        assert rows[child.pid]["cmdline"][0] == sys.executable and rows[999_999_999]["gone"] is True
        assert [(o["pid"], o["mem_bytes"]) for o in tree["gpu_processes_outside_engines"]] == [
            (os.getpid(), 2**30)
        ]
        running = running_process(child.pid)
        assert running["cmdline"][0] == sys.executable and "PATH" in running["env"]
    finally:
        child.kill()
        child.wait(5)


def test_engine_versions_from_the_interpreters_package_metadata(tmp_path: Path) -> None:
    # A prefix like a virtualenv: bin/python (a link elsewhere) and lib/python3.X/site-packages.
    prefix = tmp_path / "venv"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python3").symlink_to(sys.executable)
    site = prefix / "lib" / "python3.11" / "site-packages"
    for dist in (
        "vllm-0.32.0.dist-info",
        "torch-2.9.0+cpu.dist-info",
        "nvidia_nccl_cu12-2.27.3.dist-info",
        "requests-2.0.dist-info",
    ):
        (site / dist).mkdir(parents=True)
    got = engine_versions(
        [str(prefix / "bin" / "python3"), "-m", "vllm.entrypoints.openai.api_server"],
        {},
        "vllm",
        "0.1",
        "log",
    )
    assert got["version"] == "0.32.0" and got["version_source"].startswith("package metadata (vllm)")
    assert got["packages"] == {"nvidia-nccl-cu12": "2.27.3", "torch": "2.9.0+cpu", "vllm": "0.32.0"}
    # a console script with a #!/usr/bin/env line, resolved on the engine's PATH
    script = tmp_path / "vllm"
    script.write_text("#!/usr/bin/env python3\nimport sys\n")
    assert interpreter_of([str(script), "serve"], {"PATH": str(prefix / "bin")}) == (
        str(prefix / "bin" / "python3"),
        None,
    )
    # a native launcher: no package metadata; the log's version is used and the reason noted
    native = engine_versions(["/bin/true"], {}, "text-generation-inference", "3.3.6", "TGI 3.3.6 starting")
    assert native["version"] == "3.3.6" and native["version_source"] == "engine log: TGI 3.3.6 starting"
    assert "not a Python interpreter or script" in native["notes"][0]
    # the agent's own interpreter: the real site-packages of this checkout's virtualenv
    own = engine_versions([sys.executable, "-m", "agents.sim"], {}, "vllm", None, None)
    assert (
        "llmconsole" in own["packages"]
        and own["version"] is None
        and "vllm is not installed" in own["notes"][0]
    )
