"""Who may do what on the local API: users, roles, passwords, sessions and login limits.

- :mod:`gateway.access.roles`: :class:`Role` (viewer < operator < admin) and what each may do
- :mod:`gateway.access.passwords`: Argon2id hashes and the password policy
- :mod:`gateway.access.users`: :class:`UserStore`, the ``users.json`` file in the state dir
- :mod:`gateway.access.sessions`: :class:`Sessions`, bearer tokens per login with an expiry
- :mod:`gateway.access.login_limit`: :class:`LoginLimiter`, failed logins per user and address

The HTTP side (middleware, login and user routes) is :mod:`gateway.http_access`; the CLI's
``users`` commands are :mod:`gateway.cli.users_cmd`.
"""

from gateway.access.login_limit import LoginLimiter
from gateway.access.passwords import PasswordPolicy, hash_password, verify_password
from gateway.access.roles import Role
from gateway.access.sessions import Session, Sessions
from gateway.access.users import User, UserStore

__all__ = [
    "LoginLimiter",
    "PasswordPolicy",
    "Role",
    "Session",
    "Sessions",
    "User",
    "UserStore",
    "hash_password",
    "verify_password",
]
