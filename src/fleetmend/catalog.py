"""The images directory: load every image, fold `extends`, compute digests.

A digest is the sha256 of a canonical JSON form of the resolved image: its name,
version and everything a server gets (OS, packages, files, services, sysctls,
users, groups, volumes), plus the source of every template it uses, includes
too. The description is left out on purpose: fixing a typo in it must not make
every host built from the image look like it was built from another one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetmend.errors import InputError, Problem, display_path
from fleetmend.images import MERGED_SECTIONS, Image, ImageSpec
from fleetmend.loading import YamlDocument, parse_yaml, validate_document
from fleetmend.render import TemplateDir, command_syntax


@dataclass(frozen=True)
class _Entry:
    spec: ImageSpec
    doc: YamlDocument


class Catalog:
    """Every image of one images directory, resolved on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.templates = TemplateDir(root / "templates")
        self._entries: dict[str, _Entry] = {}
        self._broken: dict[str, list[Problem]] = {}
        """Images whose own file has errors, with those errors."""
        self._resolved: dict[str, Image] = {}
        self.problems: list[Problem] = []

    # -- loading --------------------------------------------------------------

    @classmethod
    def scan(cls, root: Path) -> Catalog:
        """Load and resolve every image, collecting every problem in `.problems`."""
        catalog = cls(root)
        catalog._load_files()
        for name in catalog.names():
            try:
                catalog.resolve(name)
            except InputError as exc:
                catalog._add(exc.problems)
        return catalog

    @classmethod
    def load(cls, root: Path) -> Catalog:
        """Like `scan`, but raise one `InputError` listing every problem found."""
        catalog = cls.scan(root)
        if catalog.problems:
            raise InputError(catalog.problems)
        return catalog

    def _add(self, problems: list[Problem]) -> None:
        for p in problems:
            if p not in self.problems:
                self.problems.append(p)

    def _load_files(self) -> None:
        if not self.root.is_dir():
            raise InputError.one(
                display_path(self.root),
                "",
                "images directory not found",
                "pass --images DIR or set FLEETMEND_IMAGES",
            )
        paths = sorted([*self.root.glob("*.yaml"), *self.root.glob("*.yml")])
        for path in paths:
            try:
                doc = parse_yaml(path)
                spec = validate_document(doc, ImageSpec)
            except InputError as exc:
                self._broken[path.stem] = exc.problems
                self._add(exc.problems)
                continue
            if spec.name != path.stem:
                mismatch = Problem(
                    doc.name,
                    doc.place(("name",)),
                    f"image name {spec.name!r} does not match the file name {path.name!r}",
                    f"rename the file to {spec.name}.yaml or set name: {path.stem}",
                )
                self._broken[path.stem] = [mismatch]
                self._add([mismatch])
                continue
            if spec.name in self._entries:
                other = self._entries[spec.name].doc.name
                self._add(
                    [Problem(doc.name, "", f"image {spec.name!r} is also defined in {other}")]
                )
                continue
            self._entries[spec.name] = _Entry(spec, doc)

    # -- queries --------------------------------------------------------------

    def names(self) -> list[str]:
        """Images that loaded; see `has` for those that exist but have errors."""
        return sorted(self._entries)

    def has(self, name: str) -> bool:
        return name in self._entries or name in self._broken

    def spec(self, name: str) -> ImageSpec:
        return self._entry(name).spec

    def source(self, name: str) -> str:
        """The file an image is declared in, as the user sees it."""
        return self._entry(name).doc.name

    def _entry(self, name: str) -> _Entry:
        if name in self._broken:
            raise InputError(self._broken[name])
        if name not in self._entries:
            raise InputError.one(
                display_path(self.root),
                "",
                f"unknown image {name!r}",
                f"known images: {', '.join(self.names()) or 'none'}",
            )
        return self._entries[name]

    def where(self, image: Image, loc: tuple[str, ...]) -> tuple[str, str]:
        """The file and place (`line: field.path`) that declare `loc` of a resolved
        image: its own file, or the parent's it inherited the value from."""
        for name in reversed(image.lineage):
            doc = self._entries[name].doc
            if loc in doc.lines:
                return doc.name, doc.place(loc)
        doc = self._entries[image.name].doc
        return doc.name, doc.place(loc)

    def resolve(self, name: str) -> Image:
        """The image with `extends` folded in, templates read and digest computed."""
        return self._resolve(name, ())

    def _resolve(self, name: str, chain: tuple[str, ...]) -> Image:
        if name in self._resolved:
            return self._resolved[name]
        entry = self._entry(name)
        spec, doc = entry.spec, entry.doc
        parent: Image | None = None
        if spec.extends is not None:
            place = doc.place(("extends",))
            if spec.extends in (*chain, name):
                cycle = " -> ".join((*chain, name, spec.extends))
                raise InputError.one(
                    doc.name, place, f"extends cycle: {cycle}", "an image cannot extend itself"
                )
            if spec.extends in self._broken:
                raise InputError.one(
                    doc.name, place, f"parent image {spec.extends!r} has errors (listed separately)"
                )
            if spec.extends not in self._entries:
                raise InputError.one(
                    doc.name,
                    place,
                    f"extends unknown image {spec.extends!r}",
                    f"known images: {', '.join(self.names())}",
                )
            parent = self._resolve(spec.extends, (*chain, name))
        image = self._build(spec, doc, parent)
        self._resolved[name] = image
        return image

    def _build(self, spec: ImageSpec, doc: YamlDocument, parent: Image | None) -> Image:
        fields: dict[str, Any] = {}
        for section in MERGED_SECTIONS:
            inherited = dict(getattr(parent, section)) if parent else {}
            inherited.update(getattr(spec, section))
            fields[section] = inherited
        templates: dict[str, str] = {}
        problems: list[Problem] = []
        for path, file in fields["files"].items():
            if file.template is None:
                continue
            if not self.templates.exists(file.template):
                # An inherited file's template was checked when the parent resolved,
                # so a missing one is always declared by this image.
                problems.append(
                    Problem(
                        doc.name,
                        doc.place(("files", path, "template")),
                        f"template {file.template!r} not found in "
                        f"{display_path(self.templates.root)}",
                        f"available: {', '.join(self.templates.names()) or 'none'}",
                    )
                )
                continue
            try:
                templates.update(self.templates.sources(file.template))
            except InputError as exc:
                problems.extend(exc.problems)
        for name, volume in fields["volumes"].items():
            for field in ("dump", "restore"):
                text = getattr(volume.reseed, field)
                wrong = None if text is None else command_syntax(text)
                if wrong is not None and name in spec.volumes:  # a parent's: reported there
                    problems.append(
                        Problem(doc.name, doc.place(("volumes", name, "reseed", field)), wrong)
                    )
        if problems:
            raise InputError(problems)
        os_ = spec.os if spec.os is not None else (parent.os if parent else None)
        lineage = [*(parent.lineage if parent else []), spec.name]
        body = {
            "name": spec.name,
            "version": spec.version,
            "os": os_.model_dump(mode="json") if os_ else None,
            **{s: _dump(fields[s]) for s in MERGED_SECTIONS},
            "templates": templates,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return Image(
            name=spec.name,
            version=spec.version,
            description=spec.description,
            lineage=lineage,
            digest=hashlib.sha256(canonical.encode()).hexdigest(),
            os=os_,
            templates=dict(sorted(templates.items())),
            **fields,
        )


def resolve_ref(ref: str, images_dir: Path) -> tuple[Catalog, Image]:
    """An image named in the catalog (`web`) or by the path of its file (`old/web.yaml`).

    A path is resolved within its own directory, with that directory's templates,
    so two versions of an image can be compared.
    """
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or "/" in ref:
        if not path.is_file():
            raise InputError.one(ref, "", "image file not found", "give an image name or a path")
        catalog = Catalog.scan(path.parent)
        return catalog, catalog.resolve(path.stem)
    catalog = Catalog.scan(images_dir)
    return catalog, catalog.resolve(ref)


def _dump(section: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v for k, v in section.items()
    }
