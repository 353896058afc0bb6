"""Credentials for a container registry: what the ECR gateway hands out and the Docker gateway
uses, in a module of their own so that neither gateway imports the other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegistryLogin:
    """Credentials for `docker login`; kept in memory only, never printed (repr hides the password)."""

    username: str
    password: str
    registry: str

    def __repr__(self) -> str:
        return f"RegistryLogin(username={self.username!r}, registry={self.registry!r}, password=***)"
