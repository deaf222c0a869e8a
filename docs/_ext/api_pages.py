"""The API reference: one page per public module of ``textenv`` and ``agents``, written at build start, and the
autodoc hooks that keep a strict build meaningful.

Each page documents the module's public names that are defined in it (its ``__all__``, or without one its
names that do not start with ``_``) and lists, with links, the public names it re-exports from elsewhere;
every object is documented once, where it is defined. A reference that Sphinx's own lookup misses is
resolved as Python resolves the name where the docstring is written (:func:`missing_reference`): a
re-exported name (``:class:`textenv.TextGenEnv```, ``:class:`agents.PPO```) or a name the module imports
leads to its one definition; anything that resolves to nothing stays missing, and the strict build fails.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.ext.napoleon import GoogleDocstring

PACKAGES = ("textenv", "agents")
OUT = "api"


def public_modules() -> list[str]:
    """Every module of ``PACKAGES`` whose dotted name has no part starting with ``_``."""
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return sorted(names)


@functools.cache
def syntax_tree(module: ModuleType) -> ast.Module:
    """The parsed source of ``module`` (parsed once per build)."""
    return ast.parse(inspect.getsource(module))


def assigned_names(module: ModuleType) -> set[str]:
    """Names a module's own source assigns at top level (its constants, not what it imports)."""
    names: set[str] = set()
    for node in syntax_tree(module).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            if isinstance(target, ast.Name):
                names.add(target.id)
    return names


def defined_here(module: ModuleType, name: str, assigned: set[str]) -> bool:
    """Whether ``module`` defines ``name`` (a class or function by its ``__module__``, data by assignment)."""
    obj = getattr(module, name)
    if isinstance(obj, ModuleType):
        return False
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return obj.__module__ == module.__name__
    return name in assigned


def public_names(module: ModuleType) -> list[str]:
    """``__all__``, or the names not starting with ``_`` that the module defines."""
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return list(exported)
    assigned = assigned_names(module)
    return [n for n in vars(module) if not n.startswith("_") and defined_here(module, n, assigned)]


def canonical_name(obj: Any) -> str | None:
    """``module.qualname`` where a class or function is defined."""
    obj = getattr(obj, "fget", obj)  # a property: its getter
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname and "<locals>" not in qualname else None


def definition(module_name: str, name: str) -> str:
    """The full name under which ``module_name.name`` is documented: where it is defined."""
    module = importlib.import_module(module_name)
    obj = getattr(module, name)
    if isinstance(obj, ModuleType):
        return obj.__name__
    if inspect.isclass(obj) or inspect.isfunction(obj):
        found = canonical_name(obj)
        if found is not None:
            return found
    if name in assigned_names(module):
        return f"{module_name}.{name}"
    # Data imported from another module: follow the ``from ... import`` that brought it here.
    source = imported_from(module, name)
    if source is None:
        raise ValueError(f"cannot find where {module_name}.{name} is defined")
    home, _, original = source.rpartition(".")
    return definition(home, original)


def imported_from(module: ModuleType, name: str) -> str | None:
    """``"package.module.original"`` when ``module`` binds ``name`` with a ``from ... import`` (anywhere at
    top level, ``if TYPE_CHECKING:`` blocks included), else ``None``."""
    package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    nodes_ = list(syntax_tree(module).body)
    while nodes_:
        node = nodes_.pop(0)
        if isinstance(node, (ast.If, ast.Try)):
            nodes_ += [*node.body, *node.orelse, *getattr(node, "finalbody", [])]
            nodes_ += [n for handler in getattr(node, "handlers", []) for n in handler.body]
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    base = package
                    for _ in range(max(node.level - 1, 0)):
                        base = base.rpartition(".")[0]
                    source = node.module if not node.level else ".".join(p for p in (base, node.module) if p)
                    return f"{source}.{alias.name}"
    return None


def directive(module: ModuleType, name: str) -> str:
    """The autodoc directive that documents ``module.name``."""
    obj = getattr(module, name)
    if inspect.isclass(obj):
        return "autoexception" if issubclass(obj, BaseException) else "autoclass"
    if inspect.isfunction(obj):
        return "autofunction"
    return "autodata"


def page(name: str, children: list[str]) -> str:
    """The reST source of module ``name``'s page: its docstring, each public name defined in it (one autodoc
    directive each, so that a name without a docstring is listed too), a table of the public names it
    re-exports (linked to their definitions) and its submodules."""
    module = importlib.import_module(name)
    names = public_names(module)
    assigned = assigned_names(module)
    own = [n for n in names if defined_here(module, n, assigned)]
    reexported = [n for n in names if n not in own]
    lines = [name, "=" * len(name), "", f".. automodule:: {name}", ""]
    if reexported:
        # One table per defining module, read in that module: a summary's relative references resolve there.
        groups: dict[str, list[str]] = {}
        for n in reexported:
            home, _, short = definition(name, n).rpartition(".")
            groups.setdefault(home, []).append(short)
        lines += ["Re-exported names", "-----------------", ""]
        for home, shorts in groups.items():
            lines += [f".. currentmodule:: {home}", "", ".. autosummary::", ""]
            lines += [f"   {short}" for short in shorts]
            lines.append("")
        lines += [f".. currentmodule:: {name}", ""]
    if own:
        lines += ["Contents", "--------", ""] if reexported else []
        for n in own:
            kind = directive(module, n)
            lines += [f".. {kind}:: {name}.{n}"]
            lines += (
                ["   :members:", "   :member-order: bysource"]
                if kind != "autodata" and kind != "autofunction"
                else []
            )
            lines.append("")
    if children:
        lines += ["Modules", "-------", "", ".. toctree::", "   :maxdepth: 1", ""]
        lines += [f"   {child}" for child in children]
        lines.append("")
    return "\n".join(lines)


def write_pages(app: Sphinx) -> None:
    """Writes ``docs/api/<module>.rst`` for every public module (a file whose text is unchanged is kept,
    so incremental builds stay incremental)."""
    out = Path(app.srcdir) / OUT
    out.mkdir(exist_ok=True)
    modules = public_modules()
    for name in modules:
        children = [m for m in modules if m.rpartition(".")[0] == name]
        path = out / f"{name}.rst"
        text = page(name, children)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    for stale in out.glob("*.rst"):
        if stale.stem not in modules:
            stale.unlink()


def lookup(dotted: str) -> tuple[bool, Any, Any]:
    """``(found, obj, owner)``: the object a dotted name imports to (the longest importable module prefix, then
    attributes), and the class it was read from (``None`` unless the last step read a class attribute)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        owner = None
        for attr in parts[split:]:
            owner = obj if inspect.isclass(obj) else None
            if owner is not None:
                # A dataclass field without a default is an annotation, not an attribute.
                declared = any(attr in getattr(c, "__annotations__", {}) for c in owner.__mro__)
                if not hasattr(owner, attr) and declared:
                    obj = None
                    continue
            if not hasattr(obj, attr) and isinstance(obj, ModuleType):
                # A name the module imports for annotations only (``if TYPE_CHECKING:``).
                source = imported_from(obj, attr)
                if source is None:
                    return False, None, None
                return lookup(".".join([source, *parts[split:][parts[split:].index(attr) + 1 :]]))
            if not hasattr(obj, attr):
                return False, None, None
            obj = getattr(obj, attr)
        return True, obj, owner
    return False, None, None


def documented_name(dotted: str) -> str | None:
    """The full name under which what ``dotted`` imports to is documented: where it is defined."""
    found, obj, owner = lookup(dotted)
    if not found:
        return None
    attr = dotted.rpartition(".")[2]
    if isinstance(obj, ModuleType):
        return obj.__name__
    if owner is not None and not (inspect.isclass(obj) or inspect.isfunction(obj)):
        # A property, field or other attribute: the class in the MRO that declares it.
        for cls in owner.__mro__:
            if attr in vars(cls) or attr in getattr(cls, "__annotations__", {}):
                return f"{canonical_name(cls)}.{attr}"
    name = canonical_name(obj) if (inspect.isclass(obj) or inspect.isroutine(obj)) else None
    if name is not None:
        return name
    module, _, attr = dotted.rpartition(".")
    try:
        return definition(module, attr) if isinstance(importlib.import_module(module), ModuleType) else None
    except (ImportError, ValueError):
        return None


IDENTIFIER = re.compile(r"[A-Za-z_][\w.]*")
STRONG_LITERAL = re.compile(r"\*\*(``[^`]+``)\*\*")


def missing_reference(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.Node | None:
    """Resolves a Python reference that Sphinx's own lookup missed, as Python resolves the name where the
    docstring is written: ``:class:`TextGenEnv``` in a module that imports it, ``:class:`agents.PPO```
    (a re-export), ``:meth:`agents.PPO.learn``` (inherited) all lead to the one documented definition. A
    name that resolves to a type variable or to another package's object is left as plain text (this
    build links no other project's docs); anything else stays missing, and the strict build fails."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip(".~")
    if not IDENTIFIER.fullmatch(target):
        return None
    module, cls = node.get("py:module"), node.get("py:class")
    scopes = [f"{module}.{cls}." if module and cls else None, f"{module}." if module else None, ""]
    for scope in scopes:
        if scope is None:
            continue
        found, obj, _ = lookup(scope + target)
        if not found:
            continue
        if isinstance(obj, TypeVar):
            return contnode
        name = documented_name(scope + target)
        if name is None or name.split(".")[0] not in PACKAGES:
            return contnode  # another package's object
        if any(part.startswith("_") for part in name.split(".")):
            return contnode  # a private name (in a signature): not documented
        new = node.deepcopy()
        new["reftarget"] = name
        domain = env.get_domain("py")
        # An annotation's :class: role may name a type alias (a union), documented as data.
        alias = node["reftype"] == "class" and not inspect.isclass(obj)
        for role in (node["reftype"], "obj") if alias else (node["reftype"],):
            found_node = domain.resolve_xref(env, node["refdoc"], app.builder, role, name, new, contnode)
            if found_node is not None:
                return found_node
        return None
    return None


def third_party_targets() -> list[tuple[str, str]]:
    """``nitpick_ignore_regex`` entries for names outside this project: the standard library, builtins and
    the third-party packages textenv and agents use (their docs are not linked: the build is offline)."""
    external = {
        "accelerate",
        "datasets",
        "gym",
        "gymnasium",
        "matplotlib",
        "np",
        "numpy",
        "peft",
        "reasoning_gym",
        "regex",
        "_regex",
        "rouge_score",
        "sacrebleu",
        "safetensors",
        "scipy",
        "stable_baselines3",
        "tensorboard",
        "tokenizers",
        "torch",
        "tqdm",
        "transformers",
        *sys.stdlib_module_names,
    }
    modules = "|".join(sorted(external))
    words = "|".join(sorted(n for n in dir(builtins) if not n.startswith("_")))
    return [
        (r"py:.*", rf"({modules})(\..+)?"),
        (r"py:.*", rf"({words})"),
    ]


def prepare_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Runs before :func:`google_docstring` (priority 499) and drops two docstrings that are not the object's:

    * a constant whose value is an instance of a class: autodoc shows the class's docstring, which is not
      the constant's (and its Attributes would be described twice);
    * a method without a docstring that inherits one from another package (``torch.nn.Module.forward``).
    """
    if not lines:
        return
    if what == "data" and not (inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, ModuleType)):
        own = inspect.cleandoc(type(obj).__doc__ or "")
        if own and "\n".join(lines).strip() == own.strip():
            lines.clear()
            return
    if what == "method" and inspect.isroutine(obj):
        owner_name, _, attr = name.rpartition(".")
        found, owner, _ = lookup(owner_name)
        if found and inspect.isclass(owner):
            for cls in owner.__mro__:
                if attr in vars(cls) and getattr(vars(cls)[attr], "__doc__", None):
                    if cls.__module__.split(".")[0] not in PACKAGES:
                        lines.clear()
                        return
                    break


def google_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """napoleon's Google-style conversion (``GoogleDocstring``), with two differences: an attribute, data or
    property docstring is read as any other docstring (napoleon reads the first line of those as
    ``TYPE: text``, and these docstrings write sentences such as "With a responder: the episode ends ..."),
    and a field whose name is a literal shows the literal."""
    kind = "" if what in ("attribute", "data", "property") else what
    converted = GoogleDocstring(lines, app.config, app, kind, name, obj, options).lines()
    # A field named by a literal (textenv.assets' ``"tiny-lm"``: ...) comes out as **``...``**, which reST
    # cannot nest: the literal alone.
    lines[:] = [STRONG_LITERAL.sub(r"\1", line) for line in converted]


def parseable_signature(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: str | None, annotation: str | None
) -> tuple[str | None, str | None] | None:
    """A dataclass field with a ``default_factory`` shows ``= <factory>``, which is no Python and makes Sphinx
    split the signature at every comma (``dict[int, str]`` into ``dict[int`` and ``str]``); ``...`` parses."""
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), annotation
    return None


def skip_member(app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """Skips a named tuple's generated field docstrings ("Alias for field number 0"): the class's Attributes
    section documents the fields."""
    doc = getattr(obj, "__doc__", None)
    if isinstance(doc, str) and doc.startswith("Alias for field number"):
        return True
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", write_pages)
    app.connect("missing-reference", missing_reference)
    app.connect("autodoc-process-docstring", prepare_docstring, priority=499)
    app.connect("autodoc-process-docstring", google_docstring)
    app.connect("autodoc-skip-member", skip_member)
    app.connect("autodoc-process-signature", parseable_signature)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
