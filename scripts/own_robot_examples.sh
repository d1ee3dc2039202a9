#!/usr/bin/env bash
# IK on two robot files that are not built in, with the README's "Your own robot" commands:
#   UR5 from example-robot-data (URDF; installed with avips_jax), tip tool0;
#   UR5e from MuJoCo Menagerie (MJCF; needs the `mjcf` extra and a clone of
#   https://github.com/google-deepmind/mujoco_menagerie, path in MENAGERIE), tip wrist_3_link.
# Each trains the `quick` preset (10 000 steps) and is evaluated on its fixed test set; the metrics
# tables go to results/own_robot.md.
# Usage: MENAGERIE=/path/to/mujoco_menagerie bash scripts/own_robot_examples.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MENAGERIE:?set MENAGERIE to a clone of github.com/google-deepmind/mujoco_menagerie}"
PY=.venv/bin/python
RUNS="${RUNS:-runs/own_robot}"
UR5="$($PY -c 'from avips_jax.kinematics import robots; print(robots.example_robot_data_path("ur_description/urdf/ur5_robot.urdf"))')"
UR5E="$MENAGERIE/universal_robots_ur5e/ur5e.xml"
train() {  # <name> <robot file> <tip>
  local start=$(date +%s)
  $PY -m experiments.train --config="experiments/configs/robot.py:$2,quick" \
    --config.target.kwargs.tip="$3" --workdir="$RUNS/$1" --noprogress
  echo "$1: trained in $(( $(date +%s) - start )) s wall" >&2
}
train ur5 "$UR5" tool0
train ur5e "$UR5E" wrist_3_link
mkdir -p results
{
  echo "# IK on robot files of your own (scripts/own_robot_examples.sh)"
  echo
  echo "Written by \`MENAGERIE=<clone> bash scripts/own_robot_examples.sh\` on $(date -u +%Y-%m-%d),"
  echo "$(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); Menagerie"
  echo "commit $(git -C "$MENAGERIE" rev-parse --short HEAD 2>/dev/null || echo "unknown (not a git clone)"), ur5e.xml sha256"
  echo "$(sha256sum "$UR5E" | cut -c1-16)...; its meshes are not needed (avips_jax.kinematics.mjcf). The commands:"
  echo
  echo '```bash'
  echo "python -m experiments.train --config=experiments/configs/robot.py:<example-robot-data>/ur_description/urdf/ur5_robot.urdf,quick \\"
  echo "    --config.target.kwargs.tip=tool0 --workdir=$RUNS/ur5"
  echo "python -m experiments.train --config=experiments/configs/robot.py:<mujoco_menagerie>/universal_robots_ur5e/ur5e.xml,quick \\"
  echo "    --config.target.kwargs.tip=wrist_3_link --workdir=$RUNS/ur5e"
  echo '```'
  for name in ur5 ur5e; do
    echo
    echo "## $name"
    echo
    $PY -m experiments.evaluate --workdir="$RUNS/$name" 2>/dev/null
  done
} > results/own_robot.md
cat results/own_robot.md
