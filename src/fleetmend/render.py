"""Templates and the desired state: image x host -> what that host must be.

The only module that builds Jinja2 environments. They are sandboxed and use
`StrictUndefined`, so a template that names a variable the host does not have
fails with the template, the line and the variable, instead of writing an empty
string into a production config file.
"""

from __future__ import annotations

import hashlib
import shlex
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict

from fleetmend.errors import InputError, Problem, display_path
from fleetmend.images import BaseOS, GroupSpec, Image, ServiceSpec, UserSpec, VolumeSpec
from fleetmend.inventory import Host


class _SourcesLoader(jinja2.BaseLoader):
    """Templates from a name -> source mapping, named by their template name.

    Unlike DictLoader it gives each template a filename, so render errors can be
    traced back to the template and line.
    """

    def __init__(self, sources: Mapping[str, str]) -> None:
        self.sources = sources

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        if template not in self.sources:
            raise jinja2.TemplateNotFound(template)
        return self.sources[template], template, lambda: True


def _environment(loader: jinja2.BaseLoader) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,  # as Ansible's template module does
        autoescape=False,
    )


class TemplateDir:
    """The templates of an images directory (`images/templates/`), read and syntax-checked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._env = _environment(jinja2.FileSystemLoader(root))

    def display(self, name: str) -> str:
        return display_path(self.root / name)

    def exists(self, name: str) -> bool:
        path = (self.root / name).resolve()
        return path.is_file() and path.is_relative_to(self.root.resolve())

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())

    def sources(self, name: str) -> dict[str, str]:
        """The source of `name` and of every template it includes, extends or imports.

        Raises `InputError` on a syntax error or a missing included template.
        """
        found: dict[str, str] = {}
        pending = [(name, "")]
        while pending:
            current, parent = pending.pop()
            if current in found:
                continue
            if not self.exists(current):
                place = self.display(parent) if parent else self.display(current)
                raise InputError.one(
                    place,
                    "",
                    f"template {current!r} not found in {display_path(self.root)}",
                    "template names are relative to images/templates/",
                )
            source = (self.root / current).read_text(encoding="utf-8")
            try:
                ast = self._env.parse(source, name=current, filename=str(self.root / current))
            except jinja2.TemplateSyntaxError as exc:
                raise InputError.one(
                    self.display(current),
                    str(exc.lineno),
                    f"template syntax error: {exc.message}",
                    "check the {{ }} and {% %} pairs near this line",
                ) from None
            found[current] = source
            for ref in meta.find_referenced_templates(ast):
                if ref is None:
                    raise InputError.one(
                        self.display(current),
                        "",
                        "a template is included by a computed name",
                        "include templates by literal names so the image digest can cover them",
                    )
                pending.append((ref, current))
        return found


class DesiredFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    content: str
    sha256: str
    mode: str
    owner: str
    group: str
    source: str
    """Where the content came from: 'inline' or 'template:NAME'."""


class DesiredState(BaseModel):
    """Everything a host must be, rendered for that host; what drift and playbooks consume."""

    model_config = ConfigDict(frozen=True)

    host: str
    image: str
    version: str
    digest: str
    os: BaseOS | None
    packages: dict[str, str]
    files: dict[str, DesiredFile]
    services: dict[str, ServiceSpec]
    sysctls: dict[str, str]
    users: dict[str, UserSpec]
    groups: dict[str, GroupSpec]
    volumes: dict[str, VolumeSpec]


def template_context(image: Image, host: Host, peers: list[Host]) -> dict[str, Any]:
    """The variables a template sees: the host's inventory vars plus `fleetmend`."""
    context: dict[str, Any] = dict(host.vars)
    context["inventory_hostname"] = host.name
    context["fleetmend"] = {
        "host": host.name,
        "address": host.address,
        "site": host.site,
        "replica_set": host.replica_set,
        "peers": [{"name": p.name, "address": p.address} for p in peers],
        "image": {"name": image.name, "version": image.version, "digest": image.digest},
    }
    return context


_ENVIRONMENTS: dict[str, SandboxedEnvironment] = {}


def _image_environment(image: Image) -> SandboxedEnvironment:
    """One environment per image digest, so each template compiles once per run.

    The digest covers every template source, so an entry can never be stale.
    """
    env = _ENVIRONMENTS.get(image.digest)
    if env is None:
        if len(_ENVIRONMENTS) >= 64:
            _ENVIRONMENTS.clear()
        env = _ENVIRONMENTS[image.digest] = _environment(_SourcesLoader(image.templates))
    return env


def render_template(
    image: Image, name: str, context: Mapping[str, Any], *, template_dir: str, host: str
) -> str:
    """Render one of the image's templates from the sources its digest covers."""
    env = _image_environment(image)
    try:
        return env.get_template(name).render(context)
    except jinja2.UndefinedError as exc:
        line, at = _template_line(exc, image.templates, name)
        problem = Problem(
            f"{template_dir}/{at}",
            str(line or ""),
            str(exc.message),
            "define it in the host's or a group's inventory vars, "
            "or give a default: {{ name | default('x') }}",
            hosts=(host,),
        )
        raise InputError([problem]) from None
    except jinja2.TemplateError as exc:
        line, at = _template_line(exc, image.templates, name)
        problem = Problem(
            f"{template_dir}/{at}", str(line or ""), f"template error: {exc}", hosts=(host,)
        )
        raise InputError([problem]) from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        line, at = _template_line(exc, image.templates, name)
        problem = Problem(
            f"{template_dir}/{at}",
            str(line or ""),
            f"template failed: {type(exc).__name__}: {exc}",
            hosts=(host,),
        )
        raise InputError([problem]) from None


def _template_line(
    exc: BaseException, sources: Mapping[str, str], default: str
) -> tuple[int | None, str]:
    """The template and line where a render error happened, from Jinja's rewritten traceback."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in sources:
            return frame.lineno, frame.filename
    return None, default


def desired_state(
    image: Image, host: Host, peers: list[Host], *, template_dir: str
) -> DesiredState:
    """Render `image` for `host`: the plain, typed state later stages compare and apply."""
    context = template_context(image, host, peers)
    files: dict[str, DesiredFile] = {}
    problems: list[Problem] = []
    for path, spec in image.files.items():
        if spec.template is not None:
            try:
                content = render_template(
                    image, spec.template, context, template_dir=template_dir, host=host.name
                )
            except InputError as exc:
                problems.extend(exc.problems)
                continue
            source = f"template:{spec.template}"
        else:
            content = spec.content or ""
            source = "inline"
        files[path] = DesiredFile(
            content=content,
            sha256=hashlib.sha256(content.encode()).hexdigest(),
            mode=spec.mode,
            owner=spec.owner,
            group=spec.group,
            source=source,
        )
    if problems:
        raise InputError(problems)
    return DesiredState(
        host=host.name,
        image=image.name,
        version=image.version,
        digest=image.digest,
        os=image.os,
        packages=image.packages,
        files=files,
        services=image.services,
        sysctls=image.sysctls,
        users=image.users,
        groups=image.groups,
        volumes=image.volumes,
    )


# -- the `command` re-seed strategy's commands ------------------------------------


class _Raw(str):
    """A value `| raw` lets into a command as it is."""


def _shell_word(value: Any) -> str:
    """Every `{{ }}` in a command is one shell word, whatever an inventory var holds."""
    if isinstance(value, _Raw):
        return value
    return shlex.quote(value if isinstance(value, str) else str(value))


_COMMANDS = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, finalize=_shell_word
)
_COMMANDS.filters["raw"] = lambda value: _Raw(str(value))


def command_syntax(text: str) -> str | None:
    """What is wrong with a command template's syntax, or None."""
    try:
        _COMMANDS.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        # the field's place gives the file line; a line within the command only helps
        # when it has several (a folded YAML scalar is one line however it looks)
        where = f" (line {exc.lineno} of the command)" if "\n" in text.strip() else ""
        return f"template error: {exc.message}{where}"
    return None


def command_context(
    image: Image, host: Host, peers: list[Host], source: Host, volume: VolumeSpec
) -> dict[str, Any]:
    """What a re-seed command sees: the target's template variables, the chosen
    `source` (name, address, site, vars) and the `volume` (path, staging)."""
    context = template_context(image, host, peers)
    context["source"] = {
        "name": source.name,
        "address": source.address,
        "site": source.site,
        "vars": dict(source.vars),
    }
    context["volume"] = {"path": volume.path, "staging": volume.staging}
    return context


def render_command(
    text: str, context: Mapping[str, Any], *, file: str, place: str, host: str
) -> str:
    """A re-seed command for one host: each `{{ }}` shell-quoted (`| raw` to opt out)."""
    try:
        return _COMMANDS.from_string(text).render(context)
    except jinja2.UndefinedError as exc:
        hint = (
            "define it in the host's or a group's inventory vars (the source's are "
            "source.vars.NAME), or give a default: {{ name | default('x') }}"
        )
        raise InputError([Problem(file, place, str(exc.message), hint, hosts=(host,))]) from None
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        problem = Problem(file, place, f"template failed: {exc}", hosts=(host,))
        raise InputError([problem]) from None
