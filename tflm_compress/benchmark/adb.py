"""Running TFLite's ``benchmark_model`` binary on an Android phone through ``adb``.

The binary is the official one: the prebuilt ``android_aarch64_benchmark_model``
linked from the LiteRT/TensorFlow Lite "Performance measurement" page, or one
built with Bazel (``bazel build -c opt --config=android_arm64
//tensorflow/lite/tools/benchmark:benchmark_model``). Both the binary and the
model are pushed to ``/data/local/tmp`` and the binary runs there through
``adb shell``; its output is parsed by :mod:`tflm_compress.benchmark.android`.
"""

import dataclasses
import os
import posixpath
import shlex
import shutil
import subprocess

from tflm_compress.benchmark.android import parse_benchmark_log
from tflm_compress.benchmark.schema import BenchmarkResult
from tflm_compress.errors import UserError

REMOTE_DIR = "/data/local/tmp"


@dataclasses.dataclass(frozen=True)
class DeviceSettings:
  """Flags for ``benchmark_model`` on the phone.

  Attributes:
    num_threads: ``--num_threads``.
    warmup_runs: ``--warmup_runs`` (minimum; the tool also warms up 0.5 s).
    num_runs: ``--num_runs`` (minimum; the tool also runs at least 1 s).
    use_xnnpack: ``--use_xnnpack=true|false``; None leaves the tool's default.
    use_gpu: ``--use_gpu=true``.
    use_nnapi: ``--use_nnapi=true``.
    report_peak_memory: ``--report_peak_memory_footprint=true``.
    cpu_mask: run under ``taskset <mask>`` (hex, e.g. ``f0`` for big cores); empty: no pinning.
    extra_flags: more ``--flag=value`` arguments, passed as they are.
    timeout_s: give up on one benchmark after this many seconds.
  """

  num_threads: int = 1
  warmup_runs: int = 1
  num_runs: int = 50
  use_xnnpack: bool | None = None
  use_gpu: bool = False
  use_nnapi: bool = False
  report_peak_memory: bool = True
  cpu_mask: str = ""
  extra_flags: tuple[str, ...] = ()
  timeout_s: float = 900.0

  def __post_init__(self):
    if self.num_threads < 1:
      raise UserError(f"--num_threads={self.num_threads}; must be >= 1")
    if self.num_runs < 1 or self.warmup_runs < 0:
      raise UserError(f"--num_runs={self.num_runs} must be >= 1 and --warmup_runs="
                      f"{self.warmup_runs} >= 0")
    if self.cpu_mask and not all(c in "0123456789abcdefABCDEF" for c in self.cpu_mask):
      raise UserError(f"--cpu_mask={self.cpu_mask!r} must be a hex mask such as f0")
    bad = [f for f in self.extra_flags if not f.startswith("--")]
    if bad:
      raise UserError(f"--benchmark_flag values must start with --, got {bad}")

  def tool_flags(self) -> list[str]:
    flags = [f"--num_threads={self.num_threads}", f"--warmup_runs={self.warmup_runs}",
             f"--num_runs={self.num_runs}"]
    if self.use_xnnpack is not None:
      flags.append(f"--use_xnnpack={str(self.use_xnnpack).lower()}")
    if self.use_gpu:
      flags.append("--use_gpu=true")
    if self.use_nnapi:
      flags.append("--use_nnapi=true")
    if self.report_peak_memory:
      flags.append("--report_peak_memory_footprint=true")
    return flags + list(self.extra_flags)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["extra_flags"] = list(self.extra_flags)
    return d


def _first_line(text: str) -> str:
  lines = [l.strip() for l in text.splitlines() if l.strip()]
  return lines[0] if lines else "no output"


class Adb:
  """One phone reached through the ``adb`` client.

  Args:
    adb: the ``adb`` executable (a name looked up on PATH, or a path).
    serial: the device to use (``adb -s``); empty: the only one attached.

  Raises:
    UserError: no ``adb``, no device, an unauthorized/offline device, or
      several devices and no ``serial``.
  """

  def __init__(self, adb: str = "adb", serial: str = ""):
    path = shutil.which(adb)
    if path is None:
      raise UserError(f"adb not found ({adb!r} is not on PATH); install Android SDK "
                      "platform-tools or pass --adb=/path/to/adb")
    self.adb = path
    self.serial = self._pick_device(serial)

  def _run(self, args: list[str], timeout_s: float = 120.0,
           device: bool = True) -> subprocess.CompletedProcess:
    command = [self.adb] + (["-s", self.serial] if device else []) + args
    try:
      return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                            check=False)
    except subprocess.TimeoutExpired:
      raise UserError(f"`adb {' '.join(args)}` ran past {timeout_s:.0f} s") from None
    except OSError as e:
      raise UserError(f"cannot run adb ({self.adb}): {e}") from None

  def _pick_device(self, serial: str) -> str:
    done = self._run(["devices"], timeout_s=60.0, device=False)
    if done.returncode != 0:
      raise UserError(f"`adb devices` failed (exit {done.returncode}): "
                      f"{_first_line(done.stderr or done.stdout)}")
    devices = {}
    for line in done.stdout.splitlines():
      parts = line.split()
      if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
        devices[parts[0]] = parts[1]
    ready = [s for s, state in devices.items() if state == "device"]
    if serial:
      if serial not in devices:
        raise UserError(f"--serial={serial!r} is not attached; `adb devices` lists "
                        f"{sorted(devices) or 'none'}")
      ready = [serial] if devices[serial] == "device" else []
    if not ready:
      if devices:
        states = ", ".join(f"{s} is {state}" for s, state in sorted(devices.items()))
        raise UserError(f"no usable Android device: {states} (accept the USB debugging "
                        "prompt on the phone, or reconnect it)")
      raise UserError("no Android device attached (`adb devices` lists none); connect a phone "
                      "with USB debugging on")
    if len(ready) > 1:
      raise UserError(f"{len(ready)} Android devices attached ({', '.join(sorted(ready))}); "
                      "pick one with --serial")
    return ready[0]

  def push(self, local: str, remote: str) -> None:
    done = self._run(["push", local, remote], timeout_s=600.0)
    if done.returncode != 0:
      raise UserError(f"adb push {local} {remote} failed: "
                      f"{_first_line(done.stderr or done.stdout)}")

  def shell(self, command: str, timeout_s: float = 120.0) -> tuple[int, str]:
    """Runs ``command`` on the phone: (exit status, stdout and stderr)."""
    done = self._run(["shell", command], timeout_s=timeout_s)
    return done.returncode, (done.stdout or "") + (done.stderr or "")

  def getprop(self, name: str) -> str:
    status, output = self.shell(f"getprop {shlex.quote(name)}", timeout_s=60.0)
    return output.strip() if status == 0 else ""

  def device_info(self) -> dict:
    return {"serial": self.serial, "model": self.getprop("ro.product.model"),
            "abi": self.getprop("ro.product.cpu.abi"),
            "android_release": self.getprop("ro.build.version.release"),
            "soc": self.getprop("ro.soc.model")}


def push_binary(adb: Adb, binary_path: str, remote_dir: str = REMOTE_DIR) -> str:
  """Pushes ``benchmark_model`` and makes it executable; returns its path on the phone."""
  remote = posixpath.join(remote_dir, os.path.basename(binary_path))
  adb.push(binary_path, remote)
  status, output = adb.shell(f"chmod 755 {shlex.quote(remote)}")
  if status != 0:
    raise UserError(f"chmod of {remote} on the phone failed: {_first_line(output)}")
  return remote


def benchmark_on_device(adb: Adb, remote_binary: str, model_path: str,
                        settings: DeviceSettings, remote_dir: str = REMOTE_DIR
                        ) -> tuple[BenchmarkResult, str]:
  """Pushes ``model_path``, runs ``benchmark_model`` on it and parses the log.

  Returns:
    (the parsed ``android-benchmark_model`` result, the raw log).

  Raises:
    UserError: the push or the run failed (the log's first error line is quoted).
  """
  remote_model = posixpath.join(remote_dir, os.path.basename(model_path))
  adb.push(model_path, remote_model)
  command = " ".join([shlex.quote(remote_binary), f"--graph={shlex.quote(remote_model)}"]
                     + [shlex.quote(f) for f in settings.tool_flags()])
  if settings.cpu_mask:
    command = f"taskset {settings.cpu_mask} {command}"
  status, log = adb.shell(command, timeout_s=settings.timeout_s)
  try:
    result = parse_benchmark_log(log, source=f"benchmark_model output for {model_path}")
  except UserError as e:
    raise UserError(f"benchmark_model failed on the phone (exit {status}): {e}") from None
  if status != 0:
    raise UserError(f"benchmark_model exited with {status} on the phone: "
                    f"{(result.extra.get('errors') or [_first_line(log)])[0]}")
  result.model = model_path
  result.model_bytes = os.path.getsize(model_path)
  result.extra["remote_model"] = remote_model
  result.extra["command"] = command
  return result, log
