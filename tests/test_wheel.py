"""The wheel ships the kernels inside the package (minitransformer/kernels/...), never as a bare
top-level `kernels`, and an installed copy imports and trains outside the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(out)], check=True, cwd=out)
    (whl,) = out.glob("minitransformer-*.whl")
    return whl


def test_wheel_maps_kernels_under_the_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "minitransformer/kernels/__init__.py" in names
    assert "minitransformer/kernels/reference/softmax.py" in names
    assert not [n for n in names if n.startswith("kernels/")], "a bare top-level `kernels` was packaged"
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]


def test_wheel_ships_the_cuda_sources_their_header_and_the_license(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    cu = {Path(n).name for n in names if n.startswith("minitransformer/kernels/cuda/") and n.endswith(".cu")}
    assert cu == {p.name for p in (ROOT / "kernels" / "cuda").glob("*.cu")}
    assert "minitransformer/kernels/cuda/common.cuh" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_every_cu_compiles_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    """The sources as an installed copy holds them (site-packages), compiled where they lie, as CuPy's
    RawModule does on a user's machine: every include must resolve inside the package."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, cwd=tmp_path)
    cuda_dir = target / "minitransformer" / "kernels" / "cuda"
    sources = sorted(cuda_dir.glob("*.cu"))
    assert sources

    def build(job: tuple[Path, str]) -> tuple[str, subprocess.CompletedProcess]:
        src, arch = job
        return f"{src.name} ({arch})", subprocess.run(
            ["nvcc", "-std=c++17", f"-arch={arch}", "-c", str(src), "-o", str(tmp_path / f"{src.stem}-{arch}.o")],
            cwd=tmp_path, capture_output=True, text=True)

    with ThreadPoolExecutor(2) as pool:
        for name, r in pool.map(build, [(src, arch) for src in sources for arch in ("sm_80", "sm_90")]):
            assert r.returncode == 0, f"{name} does not compile from the wheel:\n{r.stderr[-2000:]}"


def test_installed_wheel_imports_and_trains_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(wheel)], check=True, cwd=tmp_path)
    script = textwrap.dedent("""
        import importlib.util, pathlib
        import minitransformer as mt
        import minitransformer.nn.functional as F
        import minitransformer.kernels.reference.softmax as ks
        assert importlib.util.find_spec("kernels") is None, "bare `kernels` is importable"
        assert "site-packages" in ks.__file__, ks.__file__
        x = mt.randn(4, 3)
        w = mt.randn(3, 5, requires_grad=True)
        loss = F.log_softmax(x @ w, dim=-1).mean()
        loss.backward()
        assert w.grad.shape == (3, 5)
        print("ok", mt.backend.available())
    """)
    result = subprocess.run([str(py), "-c", script], check=True, cwd=tmp_path, capture_output=True, text=True)
    assert result.stdout.strip() == "ok ['numpy']"  # the fresh environment has no Numba: NumPy path
