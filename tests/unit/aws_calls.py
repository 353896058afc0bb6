"""Which AWS operations each deployer command can make, read from the source of deployer/.

Two readings, both of the code as it is (nothing runs):
- the calls each function makes itself: boto3 calls (`self._client.<method>(...)` in a class whose
  __init__ sets `self._client = <clients>.client("<service>", ...)`, or `<clients>.client("<service>",
  ...).<method>(...)` (or `.invoke_client(...).<method>(...)`), a waiter by the operation it polls),
  named by botocore's own service models;
  calls to a registry outside boto3 come from a table the test gives (docker push, label reads);
- who calls whom: mypy's types resolve every `obj.method` to the class that defines it (a Protocol
  to the package's classes that implement it), so a command reaches only what it can really call.

What this reading cannot follow (a client kept elsewhere, a registry call not in the table) is a
problem the test reports, so that a new AWS call cannot slip past the IAM policies unseen.
"""

from __future__ import annotations

import ast
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

import botocore.session
from botocore import xform_name
from mypy import build, nodes
from mypy import types as mtypes
from mypy.modulefinder import BuildSource
from mypy.options import Options
from mypy.subtypes import is_subtype
from mypy.traverser import NameAndMemberCollector
from mypy.typevars import fill_typevars

PACKAGE = "deployer"
# Client methods that are no API call (a waiter is resolved to the operation it polls).
NOT_CALLS = {"get_paginator", "can_paginate", "close"}
# A registry's HTTP API reached without boto3: `requests` calls, docker SDK pushes and pulls.
HTTP_CALLS = {"Session", "get", "post", "put", "patch", "delete", "head", "request"}
DOCKER_REGISTRY_CALLS = {"push", "pull"}

Named = Union[nodes.FuncDef, nodes.Decorator, nodes.OverloadedFuncDef]


# -- the calls each function makes itself (ast) ---------------------------------------------------

class Operations:
    """boto3 method names to `service:Operation`, from botocore's own models (no network)."""

    def __init__(self) -> None:
        self._session = botocore.session.get_session()
        self._models: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {}

    def _model(self, service: str) -> tuple[str, dict[str, str], dict[str, str]]:
        if service not in self._models:
            model = self._session.get_service_model(service)
            try:
                waiters = self._session.get_waiter_model(service)
                polled = {xform_name(w): waiters.get_waiter(w).operation for w in waiters.waiter_names}
            except Exception:  # botocore raises its own "no waiters" error for services without any
                polled = {}
            self._models[service] = (model.signing_name, {xform_name(op): op for op in model.operation_names}, polled)
        return self._models[service]

    def operation(self, service: str, method: str) -> str | None:
        prefix, operations, _ = self._model(service)
        return f"{prefix}:{operations[method]}" if method in operations else None

    def waiter(self, service: str, name: str) -> str | None:
        prefix, _, polled = self._model(service)
        return f"{prefix}:{polled[name]}" if name in polled else None


# Clients' makers of a client of one service (`<clients>.invoke_client(...)`: Lambda, for Invoke).
SERVICE_CLIENTS = {"invoke_client": "lambda"}


def _client_service(node: ast.AST) -> str | None:
    """The service of `<anything>.client("service", ...)`: how deployer (and boto3) make clients;
    or of a maker of SERVICE_CLIENTS."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    if node.func.attr == "client" and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return SERVICE_CLIENTS.get(node.func.attr)


@dataclass
class Calls:
    """Per function or method (by mypy's full name): the AWS operations it makes itself."""

    made: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    problems: list[str] = field(default_factory=list)


def _functions(module: str, tree: ast.Module) -> list[tuple[str, str | None, ast.ClassDef | None, ast.AST]]:
    """(full name, class, class node, node) of the module's functions and methods (nested ones belong to theirs)."""
    found: list[tuple[str, str | None, ast.ClassDef | None, ast.AST]] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append((f"{module}.{node.name}", None, None, node))
        elif isinstance(node, ast.ClassDef):
            found += [(f"{module}.{node.name}.{item.name}", f"{module}.{node.name}", node, item) for item in node.body
                      if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return found


def aws_calls(root: Path, ops: Operations, registry: Mapping[str, tuple[str, ...]]) -> Calls:
    calls = Calls()
    functions = [f for p in sorted(root.glob("*.py")) for f in _functions(f"{PACKAGE}.{p.stem}", ast.parse(p.read_text(encoding="utf-8")))]
    services = {cls: str(_client_service(n.value)) for name, cls, _, node in functions if cls and name.endswith(".__init__")
                for n in ast.walk(node) if isinstance(n, ast.Assign) and _client_service(n.value)
                and any(isinstance(t, ast.Attribute) and t.attr == "_client" for t in n.targets)}
    for name, cls, class_node, node in functions:
        calls.made[name] |= set(registry.get(name, ()))
        understood = {id(n.value) for n in ast.walk(node) if isinstance(n, ast.Assign) and name.endswith(".__init__")}
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)):
            assert isinstance(call.func, ast.Attribute)
            receiver, method = call.func.value, call.func.attr
            service = _client_service(receiver)
            if service:
                understood.add(id(receiver))
            elif isinstance(receiver, ast.Attribute) and receiver.attr == "_client" and cls in services:
                service = services[cls]
            if service is None:
                if _talks_to_registry(call) and name not in registry:
                    calls.problems.append(f"{name} calls a registry ({ast.unparse(call.func)}): add it to REGISTRY_CALLS")
            elif method == "get_waiter":
                calls.made[name] |= _waited(call, class_node or node, ops, service)
            elif method not in NOT_CALLS:
                operation = ops.operation(service, method)
                if operation is None:
                    calls.problems.append(f"{name}: the {service} client has no operation {method}")
                calls.made[name] |= {operation} if operation else set()
        calls.problems += [f"{name} uses a {_client_service(n)} client this test cannot follow ({ast.unparse(n)}): keep it in "
                           "self._client, or call it where it is made" for n in ast.walk(node)
                           if _client_service(n) and id(n) not in understood]
    for missing in set(registry) - {f[0] for f in functions}:
        calls.problems.append(f"REGISTRY_CALLS names {missing}, which deployer/ no longer has")
    return calls


def _waited(call: ast.Call, scope: ast.AST, ops: Operations, service: str) -> set[str]:
    """What a waiter polls: named by its literal argument, else by the waiter names written in its
    class (a helper that takes the waiter's name as a parameter)."""
    first = call.args[0] if call.args else None
    literal = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
    names = {literal} if literal else {n.value for n in ast.walk(scope) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return {op for op in (ops.waiter(service, n) for n in names) if op}


def _talks_to_registry(call: ast.Call) -> bool:
    func = call.func
    assert isinstance(func, ast.Attribute)
    http = isinstance(func.value, ast.Name) and func.value.id == "requests" and func.attr in HTTP_CALLS
    docker = func.attr in DOCKER_REGISTRY_CALLS and any(k.arg == "auth_config" for k in call.keywords)
    return http or docker


# -- who calls whom (mypy) -------------------------------------------------------------------------

def typed_build(root: Path) -> build.BuildResult:
    """mypy's analysis of deployer/ with every expression's type kept (other packages skipped)."""
    options = Options()
    options.export_types = True
    options.preserve_asts = True
    options.incremental = False
    options.cache_dir = os.devnull  # nothing written: the test reads the tree, never the cache
    options.ignore_missing_imports = True
    options.follow_imports = "skip"
    sources = [BuildSource(str(p), PACKAGE if p.stem == "__init__" else f"{PACKAGE}.{p.stem}") for p in sorted(root.glob("*.py"))]
    return build.build(sources, options)


class CallGraph:
    def __init__(self, result: build.BuildResult) -> None:
        self.types = result.types
        self.defs: dict[str, Named] = {}
        self.classes: list[nodes.TypeInfo] = []
        for name, tree in result.files.items():
            if name == PACKAGE or name.startswith(f"{PACKAGE}."):
                for statement in tree.defs:
                    self._index(statement)

    def _index(self, statement: nodes.Statement) -> None:
        if isinstance(statement, (nodes.FuncDef, nodes.Decorator, nodes.OverloadedFuncDef)):
            self.defs[statement.fullname] = statement
        elif isinstance(statement, nodes.ClassDef):
            self.classes.append(statement.info)
            for item in statement.defs.body:
                self._index(item)

    def _targets(self, node: Any) -> set[str]:
        """A function named, or a class made (what runs then: its dunder methods)."""
        if isinstance(node, (nodes.FuncDef, nodes.Decorator, nodes.OverloadedFuncDef)) and node.fullname in self.defs:
            return {node.fullname}
        if isinstance(node, nodes.TypeInfo):
            return {f"{node.fullname}.{m}" for m in node.names if m.startswith("__") and f"{node.fullname}.{m}" in self.defs}
        return set()

    def _members(self, typ: mtypes.Type | None, name: str) -> set[str]:
        """The methods `<a value of typ>.name` can run."""
        proper = mtypes.get_proper_type(typ)
        if isinstance(proper, mtypes.UnionType):
            return set().union(*(self._members(t, name) for t in proper.items))
        if isinstance(proper, mtypes.TypeType):
            proper = proper.item
        if not isinstance(proper, mtypes.Instance):
            return set()
        if proper.type.is_protocol:  # the package's classes that implement it
            return set().union(*(self._members(fill_typevars(c), name) for c in self.classes
                                 if not c.is_protocol and is_subtype(fill_typevars(c), proper)))
        for base in proper.type.mro:
            if name in base.names:
                return self._targets(base.names[name].node)
        return set()

    def refers_to(self, name: str) -> set[str]:
        collector = NameAndMemberCollector()
        self.defs[name].accept(collector)
        found: set[str] = set().union(*(self._targets(e.node) for e in collector.name_exprs))
        for e in collector.member_exprs:
            if e.node is not None and not isinstance(e.node, nodes.Var):  # module.function, module.Class
                found |= self._targets(e.node)
            else:
                found |= self._members(self.types.get(e.expr), e.name)
        return found

    def reachable(self, start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.refers_to(name) - seen)
        return seen

    def commands(self, cli: str = f"{PACKAGE}.cli") -> dict[str, str]:
        """CLI command -> the function that runs it (typer's @app.command, named or not)."""
        found = {}
        for name, d in self.defs.items():
            if isinstance(d, nodes.Decorator) and name == f"{cli}.{d.func.name}":
                for decorator in d.original_decorators:
                    if isinstance(decorator, nodes.CallExpr) and isinstance(decorator.callee, nodes.MemberExpr) \
                            and decorator.callee.name == "command":
                        given = decorator.args[0] if decorator.args else None
                        found[given.value if isinstance(given, nodes.StrExpr) else d.func.name.replace("_", "-")] = name
        return found
