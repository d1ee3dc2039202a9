"""`Robot`: an immutable handle on a kinematic tree with FK, centre of mass and Jacobians."""

import dataclasses
from collections.abc import Mapping, Sequence

import chex
import jax
import numpy as np

from avips_jax.kinematics import checks, errors, fk, urdf
from avips_jax.kinematics import jacobian as jacobian_lib
from avips_jax.kinematics import tree as tree_lib


@dataclasses.dataclass(frozen=True, eq=False)
class Robot:
    """A robot's kinematic tree; frozen and hashed by identity, so safe to close over in jit.

    Joints that are not in `joint_names` are held at a constant (locked value, else 0).
    FK values are concrete-checked for NaN/inf (`NonFiniteError`) only when q is concrete: under
    `jit`/`vmap`/`grad` q is a tracer and cannot be checked (use `checks.check_finite` before).

    Attributes:
        name: robot name.
        tree: the static kinematic tree.
        end_effector: the default link of `end_effector_pose` and `jacobian`.
        source: the URDF file (or "<string>").
    """

    name: str
    tree: tree_lib.KinematicTree
    end_effector: str
    source: str = "<string>"

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Actuated joints, in q order."""
        return self.tree.joint_names

    @property
    def dof(self) -> int:
        return self.tree.dof

    @property
    def lower(self) -> np.ndarray:
        """(dof,) float64 lower joint limits (rad, or m for prismatic joints); read-only."""
        return self.tree.lower

    @property
    def upper(self) -> np.ndarray:
        """(dof,) float64 upper joint limits; read-only."""
        return self.tree.upper

    @property
    def root_link(self) -> str:
        return self.tree.root

    @property
    def tips(self) -> tuple[str, ...]:
        return self.tree.tips

    @property
    def link_names(self) -> tuple[str, ...]:
        """Every link of the model (all are valid in `link_poses`)."""
        return tuple(self.tree.link_frames)

    @property
    def chain_links(self) -> tuple[str, ...]:
        """Links on the root -> tip paths, root first."""
        return self.tree.chain_links

    @property
    def total_mass(self) -> float:
        """Sum of the URDF `<inertial>` masses of all links (kg); 0 without inertials."""
        return float(np.sum(self.tree.anchor_mass))

    def link_poses(self, q: chex.Array, links: Sequence[str]) -> jax.Array:
        """Poses of `links` in the root frame.

        Args:
            q: (..., dof) joint values (rad / m); the output follows its float dtype.
            links: link names (any link of the model).

        Returns:
            (..., len(links), 4, 4) homogeneous transforms.

        Raises:
            ShapeError, NonFiniteError (concrete q only), UnknownLinkError.
        """
        links = checks.check_links(links, self.tree.link_frames, self.name)
        q = checks.prepare_q(q, self.dof, self.name)
        return fk.link_poses_jit(self.tree, q, links)

    def end_effector_pose(self, q: chex.Array) -> jax.Array:
        """(..., 4, 4) pose of `end_effector` in the root frame for q (..., dof)."""
        return self.link_poses(q, (self.end_effector,))[..., 0, :, :]

    def center_of_mass(self, q: chex.Array, include_root: bool = True) -> jax.Array:
        """Whole-body centre of mass (..., 3) in the root frame (m), over all links' inertials.

        Every link of the URDF counts, including links off the root -> tip chains (their joints
        held at 0 or at their locked value), e.g. TALOS's head and gripper fingers.

        Args:
            q: (..., dof) joint values.
            include_root: count the links rigidly attached to the root link (TALOS: base_link,
                13.5 kg of 90.27 kg). False gives pinocchio's fixed-base `pin.centerOfMass`, which
                leaves the mass on its `universe` joint out.

        Raises:
            NoInertiaError: the URDF has no `<inertial>` masses (on the counted links).
            ShapeError, NonFiniteError (concrete q only).
        """
        counted = self.total_mass - (0.0 if include_root else float(self.tree.anchor_mass[0]))
        if counted <= 0.0:
            raise errors.NoInertiaError(
                f"robot {self.name!r} ({self.source}) has no <inertial> masses"
                f"{'' if include_root else ' off the root link'}: its centre of mass is undefined"
            )
        q = checks.prepare_q(q, self.dof, self.name)
        return fk.center_of_mass_jit(self.tree, q, include_root)

    def jacobian(self, q: chex.Array, link: str | None = None, orientation: bool = True):
        """Geometric Jacobian of `link` (default: the end effector) by `jax.jacfwd`.

        Args:
            q: (..., dof) joint values.
            link: a link of the model.
            orientation: include the 3 angular rows.

        Returns:
            (..., 6, dof): rows d(position)/dq (m) then angular velocity per unit dq, both in the
            root frame; (..., 3, dof) when `orientation` is False.
        """
        link = self.end_effector if link is None else link
        (link,) = checks.check_links([link], self.tree.link_frames, self.name)
        q = checks.prepare_q(q, self.dof, self.name)
        return jacobian_lib.jacobian_jit(self.tree, q, link, orientation)


def robot_from_model(
    model: urdf.UrdfModel,
    *,
    name: str | None = None,
    root: str | None = None,
    tips: Sequence[str] | None = None,
    joint_names: Sequence[str] | None = None,
    locked: Mapping[str, float] | None = None,
    end_effector: str | None = None,
    source: str = "<string>",
) -> Robot:
    """Builds a `Robot` from a parsed URDF (arguments as in `tree.build_tree`).

    `end_effector` defaults to the first tip and must be a link of the model.
    """
    tree = tree_lib.build_tree(model, root, tips, joint_names, locked)
    end_effector = tree.tips[0] if end_effector is None else end_effector
    checks.check_links([end_effector], tree.link_frames, name or model.name)
    return Robot(name=name or model.name, tree=tree, end_effector=end_effector, source=source)
