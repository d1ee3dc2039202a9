"""The FK demo: printed poses are the FK of the saved configurations, the PNGs are real."""

import io
import json
import re

import numpy as np
import pytest
from absl import app
from absl.testing import flagsaver
from PIL import Image

from avips_jax import kinematics
from experiments import fk_demo

_ROW = re.compile(
    r"^(?P<name>\S+)\s+(?P<dof>\d+)\s+(?P<ee>\S+)\s+(?P<x>-?\d+\.\d{4})\s+(?P<y>-?\d+\.\d{4})\s+"
    r"(?P<z>-?\d+\.\d{4})\s+\((?P<quat>[^)]*)\)$"
)
_COM = re.compile(r"^talos whole-body centre of mass in base_link: \(([^)]*)\) m$")
_ROUNDING = 5e-5 + 2e-6  # printed with 4 decimals (+ float32 noise)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One run of the demo over every robot: (outdir, printed text, results)."""
    outdir = tmp_path_factory.mktemp("fk_demo")
    stream = io.StringIO()
    results = fk_demo.run_demo(outdir, seed=0, stream=stream)
    return outdir, stream.getvalue(), results


def _rows(text):
    rows = {}
    for line in text.splitlines():
        match = _ROW.match(line)
        if match:
            rows[match["name"]] = match
    return rows


def _quat_to_matrix(w, x, y, z):
    """Rotation matrix of a unit quaternion (w, x, y, z), written out by hand."""
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


@pytest.mark.slow  # the demo over every robot: ~50 s of compilation
def test_every_png_is_a_real_picture(demo):
    outdir, text, _ = demo
    names = [*fk_demo.DEMO_ROBOTS, "overview"]
    for name in names:
        path = outdir / f"{name}.png"
        assert str(path) in text, f"{path} not printed"
        assert path.stat().st_size > 20_000, f"{path} is only {path.stat().st_size} bytes"
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert min(image.size) >= 500
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
        packed = (pixels.astype(np.int32) << [16, 8, 0]).sum(axis=1)
        assert len(np.unique(packed)) > 100, f"{path} has too few colours"
        inked = np.mean(np.any(pixels < 200, axis=1))
        assert 0.005 < inked < 0.5, f"{path}: {inked:.1%} of the pixels are drawn"
        blue = np.all(np.abs(pixels.astype(int) - (31, 119, 180)) < 8, axis=1)  # the arm colour
        assert blue.sum() > 100, f"{path}: no chain drawn"


@pytest.mark.slow  # the demo over every robot: ~50 s of compilation
def test_printed_poses_are_the_fk_of_the_saved_configurations(demo):
    outdir, text, results = demo
    saved = json.loads((outdir / "configurations.json").read_text())
    rows = _rows(text)
    assert saved["seed"] == 0
    assert list(rows) == list(fk_demo.DEMO_ROBOTS)
    for result in results:
        robot = kinematics.load_robot(result.name)
        q = np.asarray(saved[result.name]["q"], np.float32)
        assert saved[result.name]["joint_names"] == list(robot.joint_names)
        assert q.shape == (robot.dof,)
        assert np.all((q >= robot.lower - 1e-6) & (q <= robot.upper + 1e-6))
        np.testing.assert_array_equal(q, result.q)
        pose = np.asarray(robot.end_effector_pose(q), np.float64)
        row = rows[result.name]
        assert int(row["dof"]) == robot.dof and row["ee"] == robot.end_effector
        printed = np.array([float(row[k]) for k in "xyz"])
        np.testing.assert_allclose(printed, pose[:3, 3], rtol=0, atol=_ROUNDING)
        quat = np.array([float(v) for v in row["quat"].split(",")])
        assert quat[0] >= 0 and abs(np.linalg.norm(quat) - 1) < 3e-4
        np.testing.assert_allclose(_quat_to_matrix(*quat), pose[:3, :3], rtol=0, atol=1e-3)


@pytest.mark.slow  # the demo over every robot: ~50 s of compilation
def test_planar_arm_matches_its_closed_form(demo):
    _, text, results = demo
    (planar,) = [r for r in results if r.name == "planar_10"]
    angles = np.cumsum(np.asarray(planar.q, np.float64))
    expected = [np.mean(np.cos(angles)), np.mean(np.sin(angles)), 0.0]  # 10 links of 0.1 m
    row = _rows(text)["planar_10"]
    printed = np.array([float(row[k]) for k in "xyz"])
    np.testing.assert_allclose(printed, expected, rtol=0, atol=_ROUNDING)
    w, x, y, z = (float(v) for v in row["quat"].split(","))
    half = angles[-1] / 2
    np.testing.assert_allclose(
        [w, x, y, z],
        np.sign(np.cos(half)) * np.array([np.cos(half), 0, 0, np.sin(half)]),
        atol=1e-4,
    )


@pytest.mark.slow  # the demo over every robot: ~50 s of compilation
def test_talos_centre_of_mass_line(demo):
    _, text, results = demo
    (talos,) = [r for r in results if r.name == "talos"]
    lines = [m for m in map(_COM.match, text.splitlines()) if m]
    assert len(lines) == 1
    printed = np.array([float(v) for v in lines[0][1].split(",")])
    expected = np.asarray(kinematics.load_robot("talos").center_of_mass(talos.q))
    np.testing.assert_allclose(printed, expected, rtol=0, atol=_ROUNDING)
    assert np.all(np.abs(printed) < 0.3)  # inside the robot's body around the base link


def test_main_reads_its_flags_and_the_seed_decides_q(tmp_path, capsys):
    def q_of(seed, folder):
        with flagsaver.as_parsed(outdir=str(folder), seed=str(seed), robots="planar_3"):
            fk_demo.main(["fk_demo"])
        return json.loads((folder / "configurations.json").read_text())["planar_3"]["q"]

    first, again, other = (q_of(s, tmp_path / f"run{i}") for i, s in enumerate((5, 5, 6)))
    assert first == again
    assert first != other
    assert (tmp_path / "run0" / "planar_3.png").is_file()
    assert "planar_3" in capsys.readouterr().out
    with pytest.raises(app.UsageError, match="unexpected arguments"):
        fk_demo.main(["fk_demo", "extra"])
