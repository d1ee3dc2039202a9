"""Exceptions raised by `avips_jax.kinematics`; each message names the offending input."""


class KinematicsError(ValueError):
    """Base class of every kinematics error (a `ValueError`)."""


class _NoQuoteKeyError(KeyError):
    """A `KeyError` whose `str()` is the plain message (KeyError otherwise quotes it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UrdfFileNotFoundError(KinematicsError, FileNotFoundError):
    """The URDF file does not exist."""


class MalformedUrdfError(KinematicsError):
    """The file is not well-formed XML."""


class NotUrdfError(KinematicsError):
    """The XML document is not a URDF (its root element is not `<robot>`)."""


class InvalidUrdfError(KinematicsError):
    """A URDF element is missing or inconsistent (bad attribute, unknown parent, cycle, ...)."""


class MimicError(InvalidUrdfError):
    """A `<mimic>` element points to an unknown joint, or mimic joints form a cycle."""


class UnsupportedJointError(KinematicsError):
    """A joint type that cannot move on a chain (`floating`, `planar`)."""


class UnknownRobotError(KinematicsError, _NoQuoteKeyError):
    """A robot name that is neither registered nor a URDF path."""


class UnknownLinkError(KinematicsError, _NoQuoteKeyError):
    """A link name that the URDF does not define."""


class UnknownJointError(KinematicsError, _NoQuoteKeyError):
    """A joint name that the URDF does not define (or that cannot be actuated)."""


class ChainError(KinematicsError):
    """The requested root, tips and joints do not form a connected chain."""


class ShapeError(KinematicsError):
    """An array has the wrong shape (e.g. the last axis of `q` is not the robot's dof)."""


class NonFiniteError(KinematicsError):
    """An input array holds NaN or infinite values."""


class NoInertiaError(KinematicsError):
    """The model has no `<inertial>` masses, so its centre of mass is undefined."""
