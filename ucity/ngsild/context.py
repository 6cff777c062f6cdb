"""JSON-LD @context handling for the NGSI-LD broker, without a JSON-LD processor on the hot path.

DESIGN.md §7: each @context a request names is compiled once into term -> IRI and IRI -> term
dictionaries; expanding and compacting attribute names and entity types is then a dict lookup.

What lives here, in the order it appears:

* the bundled core context: `CORE_CONTEXT_URLS` maps every core-context URL (unversioned and
  v1.3 ... v1.9) to the file in this package; `core_context()` is its compiled form. The broker
  never fetches the core context.
* errors: `ContextError` and its subclasses, which are also the kernel's NGSI-LD errors
  (`ucity.core.errors`), so the server maps them to ProblemDetails like any other.
* `TermDefinition`, `CompiledContext` (immutable) and `compile_local` (pure: already-dereferenced
  context objects -> `CompiledContext`).
* `expand_names` / `compact_names` (aliases `expand_entity` / `compact_entity`) and
  `expand_attrs` / `compact_attrs`: pure dict -> dict renaming between the wire form and the
  stored form of docs/storage.md.
* `ContextResolver`: request @context (URL, object, list, None) -> `CompiledContext`; fetches remote
  contexts with httpx, caches documents (LRU + TTL) and compiled results, serves hosted contexts
  locally.
* `ContextRegistry`: the `/jsonldContexts` @context management API (CIM 009 §5.13), framework-free.

Precedence. NGSI-LD places the core context last and makes it @protected, so a user context can
never redefine a core term. We compile `[user contexts ..., core]`: user term definitions are
processed in order (later wins, `null` resets), then every core term definition and the core
`@vocab` (`https://uri.etsi.org/ngsi-ld/default-context/`) are applied on top. Consequences:
undefined terms always expand with the NGSI-LD default vocabulary, and a user `@vocab` only serves
to resolve that user context's own relative term definitions. Matches what a JSON-LD processor
gives for `[user..., core]` (tests check this against PyLD), with one leniency: IRIs inside user term
definitions that the user contexts cannot resolve (an undefined `ngsi-ld:` prefix, a relative IRI
without a user `@vocab`) are resolved with the core context instead of producing an error or a
junk IRI.

Not supported (ignored when present): scoped contexts inside term definitions (`@context` in a
term definition, type-scoped contexts), `@base`, `@language`, `@direction`, `@nest`. They do not
change attribute names or entity types in NGSI-LD payloads in practice.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import re
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from importlib import resources
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, overload
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx
import orjson

from ucity.core import errors
from ucity.core.clock import parse_iso, to_iso
from ucity.core.netguard import AddressGuard, RefusedAddress

# --------------------------------------------------------------------------------------------
# The bundled core context
# --------------------------------------------------------------------------------------------

CORE_CONTEXT_FILE: Final = "ngsi-ld-core-context-v1.9.jsonld"
"""The core context file bundled in this package (ucity/ngsild/)."""

CORE_CONTEXT_URL: Final = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
"""The URL naming exactly the bundled core context (for Link headers in responses)."""

_CORE_URL_STEM: Final = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context"

CORE_CONTEXT_URLS: Final[Mapping[str, str]] = MappingProxyType(
    {f"{_CORE_URL_STEM}.jsonld": CORE_CONTEXT_FILE}
    | {f"{_CORE_URL_STEM}-v1.{minor}.jsonld": CORE_CONTEXT_FILE for minor in range(3, 10)}
)
"""Every URL of the core context -> the bundled file that answers for it."""

DEFAULT_VOCAB: Final = "https://uri.etsi.org/ngsi-ld/default-context/"
"""The core context's @vocab: where terms that no context defines expand to."""

JsonObject: TypeAlias = dict[str, Any]
ContextInput: TypeAlias = str | Mapping[str, Any] | Sequence[Any] | None
"""What a request may give as @context: a URL, an inline object, a list of both, or nothing."""


@cache
def core_document() -> Mapping[str, Any]:
    """The bundled core context document (`{"@context": {...}}`), parsed once; do not mutate."""
    text = resources.files(__package__).joinpath(CORE_CONTEXT_FILE).read_bytes()
    document: JsonObject = orjson.loads(text)
    return document


@cache
def core_context() -> CompiledContext:
    """The compiled core context alone: what a request without any @context uses."""
    terms, vocab = _compile_core_terms()
    return CompiledContext(terms, vocab)


# --------------------------------------------------------------------------------------------
# Errors (the kernel's NGSI-LD errors, with one common base for everything @context)
# --------------------------------------------------------------------------------------------


class ContextError(errors.UcityError):
    """Any failure to use an @context; catch this to handle them all."""


class LdContextNotAvailable(ContextError, errors.LdContextNotAvailable):
    """503: a remote @context could not be retrieved (unreachable, timeout, HTTP error)."""


class InvalidContext(ContextError, errors.LdContextInvalid):
    """400 BadRequestData: an @context (inline or fetched) is not a usable JSON-LD context."""


class ContextBadRequest(ContextError, errors.BadRequest):
    """400 BadRequestData: a request of the @context management API that cannot be served."""


class ContextNotFound(ContextError, errors.NotFound):
    """404 ResourceNotFound: no @context with this id is known to the registry."""


# --------------------------------------------------------------------------------------------
# Compiled contexts
# --------------------------------------------------------------------------------------------

_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_GEN_DELIMS: Final = frozenset(":/?#[]@")
_MEMO_LIMIT: Final = 8192  # compaction memo entries per context; bounds memory under odd input


@dataclass(frozen=True, slots=True)
class TermDefinition:
    """One term of a compiled context. Only `iri` and `prefix` matter for names; the rest is info."""

    term: str
    iri: str | None  # None: the term was explicitly mapped to null
    type: str | None = None  # @type as written (e.g. "@id", "@vocab", "DateTime")
    container: tuple[str, ...] = ()
    prefix: bool = False  # usable as the prefix of a CURIE (JSON-LD 1.1 prefix flag)
    protected: bool = False
    reverse: bool = False
    core: bool = False  # defined by the NGSI-LD core context


@dataclass(frozen=True, slots=True, eq=False)
class CompiledContext:
    """An @context compiled into lookup tables; immutable and safe to share between requests.

    `terms` holds the effective term definitions (user terms, overridden by core terms); `vocab`
    is the effective @vocab (the NGSI-LD default context whenever the core is included).
    """

    terms: Mapping[str, TermDefinition]
    vocab: str | None
    _expand: dict[str, str] = field(init=False, repr=False)
    _compact: dict[str, str] = field(init=False, repr=False)
    _prefixes: dict[str, str] = field(init=False, repr=False)
    _memo: dict[str, str] = field(init=False, repr=False)
    # Names that model.expand_name has already checked and expanded with this context (name -> IRI):
    # a batch of entities repeats the same few names, and the checks cost more than the lookup.
    name_memo: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", MappingProxyType(dict(self.terms)))
        object.__setattr__(self, "_expand", _expansion_map(self.terms.values()))
        object.__setattr__(self, "_compact", _compaction_map(self.terms.values()))
        object.__setattr__(self, "_prefixes", _prefix_map(self.terms.values()))
        object.__setattr__(self, "_memo", {})
        object.__setattr__(self, "name_memo", {})

    @property
    def has_user_terms(self) -> bool:
        """Whether any term comes from a user context (False for the core context alone)."""
        return any(not definition.core for definition in self.terms.values())

    def expand_term(self, term: str) -> str:
        """The IRI of an attribute name (or any vocabulary term).

        A defined term gives its IRI; `prefix:suffix` with a known prefix gives the CURIE's IRI;
        anything else with a scheme (`https:`, `urn:`, `_:` blank nodes ...) stays as it is; the
        rest expands with @vocab, i.e. `https://uri.etsi.org/ngsi-ld/default-context/<term>`.
        """
        iri = self._expand.get(term)
        if iri is not None:
            return iri
        return self._expand_undefined(term)

    def expand_type(self, name: str) -> str:
        """The IRI of an entity type name; the same rules as `expand_term`."""
        return self.expand_term(name)

    def compact_iri(self, iri: str) -> str:
        """The short name for an IRI, the inverse of `expand_term`.

        In order: a term mapping to the IRI (user terms before core terms, then the shortest);
        the suffix after the default vocabulary when that suffix is not itself a term; the
        shortest CURIE with a known prefix; otherwise the IRI itself. Every result expands back
        to the same IRI.
        """
        term = self._compact.get(iri)
        if term is not None:
            return term
        memo = self._memo.get(iri)
        if memo is not None:
            return memo
        short = self._compact_undefined(iri)
        if len(self._memo) < _MEMO_LIMIT:
            self._memo[iri] = short
        return short

    def compact_type(self, iri: str) -> str:
        """The short name of an entity type IRI; the same rules as `compact_iri`."""
        return self.compact_iri(iri)

    def _expand_undefined(self, term: str) -> str:
        if term.startswith("@"):
            return term
        prefix, colon, suffix = term.partition(":")
        if colon:
            if prefix == "_" or suffix.startswith("//"):
                return term
            base = self._prefixes.get(prefix)
            if base is not None:
                return base + suffix
            if _SCHEME.match(term):
                return term
        return term if self.vocab is None else self.vocab + term

    def _compact_undefined(self, iri: str) -> str:
        vocab = self.vocab
        if vocab is not None and iri.startswith(vocab) and len(iri) > len(vocab):
            suffix = iri[len(vocab) :]
            # A suffix that is a term, or looks like a CURIE/IRI, would expand to something else.
            if suffix not in self._expand and ":" not in suffix and not suffix.startswith("@"):
                return suffix
        return self._best_curie(iri) or iri

    def _best_curie(self, iri: str) -> str | None:
        best: str | None = None
        for prefix, base in self._prefixes.items():
            if not iri.startswith(base) or len(iri) == len(base):
                continue
            suffix = iri[len(base) :]
            curie = f"{prefix}:{suffix}"
            if suffix.startswith("//") or self._expand.get(curie, iri) != iri:
                continue
            if best is None or (len(curie), curie) < (len(best), best):
                best = curie
        return best


def _expansion_map(definitions: Iterable[TermDefinition]) -> dict[str, str]:
    return {d.term: d.iri for d in definitions if d.iri is not None}


def _compaction_map(definitions: Iterable[TermDefinition]) -> dict[str, str]:
    # Preference, best first: a user term, then the shortest, then the lexicographically least
    # (the JSON-LD tie-break), so a user's own alias for a core IRI is what the user gets back.
    ranked = sorted(
        (d for d in definitions if d.iri is not None and not d.iri.startswith("@") and not d.reverse),
        key=lambda d: (d.core, len(d.term), d.term),
        reverse=True,
    )
    return {d.iri: d.term for d in ranked if d.iri is not None}


def _prefix_map(definitions: Iterable[TermDefinition]) -> dict[str, str]:
    return {d.term: d.iri for d in definitions if d.prefix and d.iri is not None and not d.iri.startswith("@")}


# --------------------------------------------------------------------------------------------
# Compiling local contexts (pure)
# --------------------------------------------------------------------------------------------

LocalContext: TypeAlias = Mapping[str, Any]


def compile_local(contexts: Iterable[LocalContext | None]) -> CompiledContext:
    """Compile dereferenced user contexts (objects, in order; None resets) plus the core context.

    Pure and synchronous: the input holds no URLs (the resolver fetches those first). Raises
    `InvalidContext` for a definition that is not a JSON-LD term definition.
    """
    core_terms, core_vocab = _compile_core_terms()
    fallback = core_context()
    user: dict[str, TermDefinition] = {}
    user_vocab: str | None = None  # only resolves user term definitions; the core @vocab wins
    for local in contexts:
        if local is None:
            user, user_vocab = {}, None  # JSON-LD: null clears the active context (core re-applied below)
            continue
        if not isinstance(local, Mapping):
            raise InvalidContext(f"로컬 @context는 JSON 객체여야 함({type(local).__name__}) / "
                                 f"a local @context must be a JSON object, got {type(local).__name__}")
        processor = _LocalContextProcessor(user, local, fallback, vocab=user_vocab)
        processor.run()
        user_vocab = processor.vocab
    return CompiledContext({**user, **core_terms}, core_vocab)


@cache
def _compile_core_terms() -> tuple[Mapping[str, TermDefinition], str | None]:
    local = core_document()["@context"]
    terms: dict[str, TermDefinition] = {}
    processor = _LocalContextProcessor(terms, local, None, core=True)
    processor.run()
    return MappingProxyType(terms), processor.vocab


class _LocalContextProcessor:
    """Adds the term definitions of one local context to `terms` (the JSON-LD "create term
    definition" algorithm, reduced to what names need). Terms of the same local context may refer
    to each other in any order, hence the `defined` bookkeeping."""

    def __init__(
        self,
        terms: dict[str, TermDefinition],
        local: LocalContext,
        fallback: CompiledContext | None,
        *,
        vocab: str | None = None,
        core: bool = False,
    ) -> None:
        self.terms = terms
        self.local = local
        self.fallback = fallback
        self.core = core
        self.defined: dict[str, bool] = {}
        self.vocab = vocab  # the active @vocab; a local "@vocab" replaces it

    def run(self) -> None:
        if "@vocab" in self.local:
            self.vocab = self._local_vocab()
        for term in self.local:
            if not term.startswith("@"):
                self._define(term)

    def _local_vocab(self) -> str | None:
        raw = self.local["@vocab"]
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise InvalidContext("@vocab은 문자열이나 null이어야 함 / @vocab must be a string or null")
        return self._resolve(raw)

    def _define(self, term: str) -> None:
        state = self.defined.get(term)
        if state is True:
            return
        if state is False:
            raise InvalidContext(f"용어 {term!r}의 IRI 대응이 순환함 / cyclic IRI mapping for term {term!r}")
        self.defined[term] = False
        definition = self._definition(term, self.local[term])
        if definition is not None:
            self.terms[term] = definition
        self.defined[term] = True

    def _definition(self, term: str, raw: Any) -> TermDefinition | None:
        if term == "":
            raise InvalidContext("빈 문자열은 용어가 될 수 없음 / an empty string is not a valid term")
        if raw is None:
            return TermDefinition(term, None, core=self.core)
        if isinstance(raw, str):
            iri = self._iri_of(term, raw)
            if iri is None:
                return None
            return TermDefinition(term, iri, prefix=_is_prefix(term, iri), protected=self._protected(), core=self.core)
        if isinstance(raw, Mapping):
            return self._expanded_definition(term, raw)
        raise InvalidContext(f"용어 {term!r}의 정의는 문자열, 객체, null 중 하나여야 함 / "
                             f"term definition of {term!r} must be a string, an object or null")

    def _expanded_definition(self, term: str, raw: Mapping[str, Any]) -> TermDefinition | None:
        reverse = "@reverse" in raw
        target = raw["@reverse"] if reverse else raw.get("@id", _MISSING)
        if target is None:
            return TermDefinition(term, None, core=self.core)
        if target is _MISSING:
            iri = self._iri_of_undefined(term)
        elif isinstance(target, str):
            iri = self._iri_of(term, target)
        else:
            raise InvalidContext(f"용어 {term!r}의 @id는 문자열이나 null이어야 함 / "
                                 f"@id of term {term!r} must be a string or null")
        if iri is None:
            return None
        type_ = raw.get("@type")
        return TermDefinition(
            term,
            iri,
            type=type_ if isinstance(type_, str) else None,
            container=_container(raw.get("@container")),
            prefix=bool(raw.get("@prefix", False)),
            protected=bool(raw.get("@protected", self._protected())),
            reverse=reverse,
            core=self.core,
        )

    def _protected(self) -> bool:
        return bool(self.local.get("@protected", False))

    def _iri_of(self, term: str, value: str) -> str | None:
        if value == term:
            # "name": "name" would be a cycle in JSON-LD; read it as "name relative to @vocab".
            return self._iri_of_undefined(term)
        return self._resolve(value)

    def _iri_of_undefined(self, term: str) -> str | None:
        if ":" in term:
            return self._resolve_colon(term)
        return self._resolve_vocab(term)

    def _resolve(self, value: str) -> str | None:
        """IRI expansion of a value inside a term definition (JSON-LD, vocab-relative)."""
        if value.startswith("@"):
            return value if value in _KEYWORDS else None  # "@foo" is reserved: ignore the term
        if value in self.local and self.defined.get(value) is not True:
            self._define(value)
        known = self.terms.get(value)
        if known is not None:
            return known.iri
        if ":" in value:
            return self._resolve_colon(value)
        return self._resolve_vocab(value)

    def _resolve_colon(self, value: str) -> str:
        prefix, _, suffix = value.partition(":")
        if prefix == "_" or suffix.startswith("//"):
            return value
        if prefix in self.local and self.defined.get(prefix) is not True:
            self._define(prefix)
        known = self.terms.get(prefix)
        if known is not None and known.prefix and known.iri is not None:
            return known.iri + suffix
        if known is None and self.fallback is not None and prefix in self.fallback._prefixes:
            return self.fallback._prefixes[prefix] + suffix  # an undeclared core prefix (ngsi-ld:)
        if _SCHEME.match(value):
            return value
        return self._resolve_vocab(value)

    def _resolve_vocab(self, value: str) -> str:
        if self.vocab is not None:
            return self.vocab + value
        if self.fallback is not None:
            return self.fallback.expand_term(value)  # leniency: core terms, then the default vocab
        raise InvalidContext(f"{value!r}을(를) IRI로 풀 수 없음: @vocab 없음 / cannot resolve {value!r} to an IRI: no @vocab")


_MISSING: Final = object()
_KEYWORDS: Final = frozenset(
    {
        "@base", "@container", "@context", "@direction", "@graph", "@id", "@import", "@included",
        "@index", "@json", "@language", "@list", "@nest", "@none", "@prefix", "@propagate",
        "@protected", "@reverse", "@set", "@type", "@value", "@version", "@vocab",
    }
)  # fmt: skip


def _is_prefix(term: str, iri: str) -> bool:
    # JSON-LD 1.1: a simple term definition is a prefix when its IRI ends with a gen-delim.
    return ":" not in term and "/" not in term and not iri.startswith("@") and iri[-1:] in _GEN_DELIMS


def _container(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list):
        return tuple(item for item in raw if isinstance(item, str))
    return ()


# --------------------------------------------------------------------------------------------
# Renaming entities between the wire form and the stored form (pure, hot path)
# --------------------------------------------------------------------------------------------

ENTITY_MEMBERS: Final = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt"})
"""Entity members that are not attributes: kept as they are (except `type`, whose values are
entity type names). Everything else at entity level is an attribute, including `location`,
`observationSpace` and `operationSpace` (GeoProperties, `location` being a core term)."""

INSTANCE_MEMBERS: Final = frozenset(
    {
        "type", "value", "object", "objectList", "valueList", "languageMap", "lang", "json",
        "datasetId", "observedAt", "unitCode", "createdAt", "modifiedAt", "deletedAt", "instanceId",
        "previousValue", "previousObject", "previousObjectList", "previousValueList",
        "previousLanguageMap", "previousJson",
        # temporal "simplified" representation
        "values", "objects", "valueLists", "objectLists", "languageMaps", "jsons", "vocabs",
    }
)  # fmt: skip
"""Members of an attribute instance that are not sub-attributes: kept as they are."""

VOCAB_MEMBERS: Final = frozenset({"vocab", "previousVocab", "objectType"})
"""Instance members whose values are vocabulary terms (core: `"@type": "@vocab"`): VocabProperty
`vocab` and Relationship `objectType`. Their string values are renamed like names."""


def expand_names(entity: Mapping[str, Any], ctx: CompiledContext) -> JsonObject:
    """Rename a wire-form entity (or entity fragment) to the stored names: a new dict.

    What changes: entity `type` values (a string or a list, shape kept) are expanded with
    `expand_type`; every other entity member not in `ENTITY_MEMBERS` is an attribute whose name
    is expanded with `expand_term`; an attribute's value, if an object (one instance) or a list
    of objects (multi-attribute), has its non-reserved members (sub-attributes) expanded the same
    way, recursively; `vocab` / `objectType` string values are expanded as terms.

    What does not: the members in `ENTITY_MEMBERS` and `INSTANCE_MEMBERS`, members starting
    with `@` (e.g. `@context`), values (including structured values and GeoJSON), and shapes -
    an attribute with one instance stays one object here; the list-of-instances form of the store
    is made elsewhere. No validation. Input must be normalized or concise-with-objects: a plain
    JSON object as a keyValues value would have its keys read as sub-attribute names.

    If two names expand to the same IRI (e.g. `name` and its full IRI), their instances are
    merged into one list, as a JSON-LD processor would.
    """
    return _rename_entity(entity, ctx.expand_term, ctx.expand_type)


def compact_names(entity: Mapping[str, Any], ctx: CompiledContext) -> JsonObject:
    """The inverse of `expand_names`: stored names -> short names for a response, a new dict.

    Also accepts a stored document (docs/storage.md) as is: its `attrs` map (a member no
    expanded attribute can be named, since attribute IRIs contain ':') is renamed with
    `compact_attrs`, keeping the list-of-instances shape.
    """
    return _rename_entity(entity, ctx.compact_iri, ctx.compact_type, stored_attrs=True)


def expand_attrs(attrs: Mapping[str, Any], ctx: CompiledContext) -> JsonObject:
    """Expand a map attribute name -> instance(s) (every key is an attribute name)."""
    return _rename_attrs(attrs, ctx.expand_term)


def compact_attrs(attrs: Mapping[str, Any], ctx: CompiledContext) -> JsonObject:
    """Compact a map attribute IRI -> instance(s), such as the `attrs` of a stored document."""
    return _rename_attrs(attrs, ctx.compact_iri)


expand_entity = expand_names
compact_entity = compact_names

_Rename: TypeAlias = Callable[[str], str]


def _rename_entity(
    entity: Mapping[str, Any], rename: _Rename, rename_type: _Rename, *, stored_attrs: bool = False
) -> JsonObject:
    out: JsonObject = {}
    for key, value in entity.items():
        if key == "type":
            out[key] = _rename_values(value, rename_type)
        elif key in ENTITY_MEMBERS or key.startswith("@"):
            out[key] = value
        elif stored_attrs and key == "attrs" and isinstance(value, Mapping):
            out[key] = _rename_attrs(value, rename)
        else:
            _put_attribute(out, rename(key), _rename_attribute(value, rename))
    return out


def _rename_attrs(attrs: Mapping[str, Any], rename: _Rename) -> JsonObject:
    out: JsonObject = {}
    for name, value in attrs.items():
        _put_attribute(out, rename(name), _rename_attribute(value, rename))
    return out


def _put_attribute(out: JsonObject, name: str, value: Any) -> None:
    if name not in out:
        out[name] = value
        return
    previous = out[name]
    out[name] = [*_as_list(previous), *_as_list(value)]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _rename_attribute(value: Any, rename: _Rename) -> Any:
    if isinstance(value, Mapping):
        return _rename_instance(value, rename)
    if isinstance(value, list):
        return [_rename_instance(item, rename) if isinstance(item, Mapping) else item for item in value]
    return value


def _rename_instance(instance: Mapping[str, Any], rename: _Rename) -> JsonObject:
    out: JsonObject = {}
    for key, value in instance.items():
        if key in VOCAB_MEMBERS:
            out[key] = _rename_values(value, rename)
        elif key in INSTANCE_MEMBERS or key.startswith("@"):
            out[key] = value
        else:
            _put_attribute(out, rename(key), _rename_attribute(value, rename))
    return out


def _rename_values(value: Any, rename: _Rename) -> Any:
    if isinstance(value, str):
        return rename(value)
    if isinstance(value, list):
        return [rename(item) if isinstance(item, str) else item for item in value]
    return value


# --------------------------------------------------------------------------------------------
# Resolving request contexts (async: fetches remote contexts, caches)
# --------------------------------------------------------------------------------------------

HostedLookup: TypeAlias = Callable[[str], Mapping[str, Any] | None]
HostedSource: TypeAlias = Mapping[str, Mapping[str, Any]] | HostedLookup
Now: TypeAlias = Callable[[], datetime]

_ACCEPT: Final = "application/ld+json, application/json;q=0.9, */*;q=0.1"
_STALE_RETRY: Final = timedelta(seconds=30)  # how soon to retry a URL whose refetch failed
_NEVER: Final = datetime.max.replace(tzinfo=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Usage:
    hits: int = 0
    last: datetime | None = None


@dataclass(slots=True)
class _CachedDocument:
    document: Mapping[str, Any]
    fetched_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class _CompiledEntry:
    context: CompiledContext
    deps: tuple[str, ...]  # every context URL (remote or hosted) the result was built from
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CachedContextInfo:
    """A remote context in the resolver's cache, as the registry lists it (kind Cached)."""

    url: str
    local_id: str
    document: Mapping[str, Any]
    fetched_at: datetime
    hits: int
    last_usage: datetime | None


class ContextResolver:
    """Turns the @context of a request into a `CompiledContext`, fetching and caching as needed.

    Remote context documents are cached by URL (LRU, `cache_size` entries, `ttl` lifetime); a
    URL whose refetch fails after expiry keeps being served from the stale copy (retried every
    30 s) rather than failing every request. Compiled results are cached by the input (the URL
    string itself, or the JSON of an inline object/list) and expire with the documents they were
    built from. Concurrent requests for the same URL share one fetch. Core context URLs and
    hosted contexts (`hosted`: a mapping URL -> document or a lookup function) never cause HTTP.
    """

    def __init__(
        self,
        hosted: HostedSource | None = None,
        *,
        timeout: float = 5.0,
        ttl: timedelta = timedelta(hours=1),
        cache_size: int = 256,
        compiled_cache_size: int = 1024,
        max_depth: int = 8,
        max_bytes: int = 4 * 1024 * 1024,
        client: httpx.AsyncClient | None = None,
        now: Now = _utcnow,
        block_private_networks: bool = False,
        allowed_networks: Sequence[str] = (),
    ) -> None:
        self.timeout = timeout
        self.block_private_networks = block_private_networks
        self.allowed_networks = tuple(allowed_networks)  # open to the guard although non-public (CIDR)
        self.ttl = ttl
        self.cache_size = cache_size
        self.compiled_cache_size = compiled_cache_size
        self.max_depth = max_depth
        self.max_bytes = max_bytes
        self._now = now
        self._hosted: list[HostedLookup] = []
        if hosted is not None:
            self.add_hosted_source(hosted)
        self._client = client
        self._owns_client = client is None
        self._documents: OrderedDict[str, _CachedDocument] = OrderedDict()
        self._compiled: OrderedDict[str | bytes, _CompiledEntry] = OrderedDict()
        self._usage: dict[str, _Usage] = {}
        self._inflight: dict[str, asyncio.Future[Mapping[str, Any]]] = {}

    # -- public ------------------------------------------------------------------------------

    def add_hosted_source(self, hosted: HostedSource) -> None:
        """Serve the contexts of `hosted` locally (consulted in the order added, before HTTP)."""
        if isinstance(hosted, Mapping):
            self._hosted.append(hosted.get)
        else:
            self._hosted.append(hosted)

    async def compile(self, ctx: ContextInput) -> CompiledContext:
        """The compiled context for what a request sent (Link URL, body @context, or None)."""
        if ctx is None or (isinstance(ctx, str) and ctx in CORE_CONTEXT_URLS):
            return core_context()
        key = ctx if isinstance(ctx, str) else _cache_key(ctx)
        now = self._now()
        entry = self._compiled.get(key)
        if entry is not None and entry.expires_at > now:
            self._compiled.move_to_end(key)
            self._record_use(entry.deps, now)
            return entry.context
        entry = await self._compile_fresh(ctx)
        self._remember_compiled(key, entry)
        self._record_use(entry.deps, now)
        return entry.context

    async def document(self, url: str) -> Mapping[str, Any]:
        """The context document (`{"@context": ...}`) behind a URL: core, hosted, cached or fetched."""
        if url in CORE_CONTEXT_URLS:
            return core_document()
        return await self._document(url)

    def cached(self) -> list[CachedContextInfo]:
        """The remote contexts currently cached, least recently used first."""
        return [self._info(url, entry) for url, entry in self._documents.items()]

    def cached_info(self, url: str) -> CachedContextInfo | None:
        """The cache entry of one remote context, if cached."""
        entry = self._documents.get(url)
        return None if entry is None else self._info(url, entry)

    def usage(self, url: str) -> tuple[int, datetime | None]:
        """(number of requests that used the context at `url`, time of the last one)."""
        usage = self._usage.get(url)
        return (0, None) if usage is None else (usage.hits, usage.last)

    def invalidate(self, url: str) -> bool:
        """Forget a context URL: its cached document, usage, and every compiled result using it.

        Returns whether a cached document was dropped. The registry calls this when a hosted
        context is deleted, or a cached one is evicted.
        """
        dropped = self._documents.pop(url, None) is not None
        self._usage.pop(url, None)
        stale = [key for key, entry in self._compiled.items() if url in entry.deps]
        for key in stale:
            del self._compiled[key]
        return dropped

    async def reload(self, url: str) -> Mapping[str, Any]:
        """Fetch a remote context again now; on failure the cached copy is left as it was."""
        document = await self._fetch_shared(url)
        self.invalidate(url)
        self._store_document(url, document)
        return document

    async def aclose(self) -> None:
        """Close the HTTP client if this resolver created it."""
        if self._client is not None and self._owns_client:
            await self._client.aclose()
        self._client = None

    async def __aenter__(self) -> ContextResolver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- compiling ---------------------------------------------------------------------------

    async def _compile_fresh(self, ctx: ContextInput) -> _CompiledEntry:
        locals_: list[LocalContext | None] = []
        deps: list[str] = []
        await self._collect(ctx, None, (), locals_, deps)
        compiled = compile_local(locals_)
        return _CompiledEntry(compiled, tuple(dict.fromkeys(deps)), self._expiry_of(deps))

    async def _collect(
        self,
        ctx: Any,
        base: str | None,
        chain: tuple[str, ...],
        out: list[LocalContext | None],
        deps: list[str],
    ) -> None:
        """Flatten a (possibly nested) @context value into local context objects, in order."""
        if ctx is None:
            out.append(None)
        elif isinstance(ctx, str):
            await self._collect_url(ctx, base, chain, out, deps)
        elif isinstance(ctx, Mapping):
            out.append(await self._with_import(ctx, base, chain, deps))
        elif isinstance(ctx, list | tuple):
            for item in ctx:
                if isinstance(item, list | tuple):
                    raise InvalidContext("@context 배열 안에 배열을 둘 수 없음 / an @context array cannot contain an array")
                await self._collect(item, base, chain, out, deps)
        else:
            raise InvalidContext(f"@context는 URL, 객체, 배열 중 하나여야 함({type(ctx).__name__}) / "
                                 f"an @context must be a URL, an object or an array, got {type(ctx).__name__}")

    async def _collect_url(
        self,
        ref: str,
        base: str | None,
        chain: tuple[str, ...],
        out: list[LocalContext | None],
        deps: list[str],
    ) -> None:
        url = _absolute_url(ref, base)
        if url in CORE_CONTEXT_URLS:
            return  # the core is always applied last anyway
        if url in chain:
            raise InvalidContext(f"@context {url}을(를) 재귀적으로 포함함 / recursive @context inclusion of {url}")
        if len(chain) >= self.max_depth:
            raise InvalidContext(f"{url}에서 @context 중첩이 {self.max_depth}단계보다 깊음 / "
                                 f"@context nesting deeper than {self.max_depth} levels at {url}")
        document = await self._document(url)
        deps.append(url)
        await self._collect(document["@context"], url, (*chain, url), out, deps)

    async def _with_import(
        self, local: Mapping[str, Any], base: str | None, chain: tuple[str, ...], deps: list[str]
    ) -> Mapping[str, Any]:
        """A local context with its JSON-LD 1.1 `@import` merged in (the importing one wins)."""
        ref = local.get("@import")
        if ref is None:
            return local
        if not isinstance(ref, str):
            raise InvalidContext("@import는 URL 문자열이어야 함 / @import must be a URL string")
        url = _absolute_url(ref, base)
        if url in chain or len(chain) >= self.max_depth:
            raise InvalidContext(f"{url}을(를) @import할 수 없음: 재귀이거나 너무 깊음 / "
                                 f"cannot @import {url}: recursive or too deep")
        imported = (await self.document(url))["@context"]
        if not isinstance(imported, Mapping):
            raise InvalidContext(f"{url}의 @import: 그 @context는 객체 하나여야 함 / "
                                 f"@import of {url}: its @context must be a single object")
        if url not in CORE_CONTEXT_URLS:
            deps.append(url)
        merged = dict(imported)
        merged.update((key, value) for key, value in local.items() if key != "@import")
        return merged

    def _remember_compiled(self, key: str | bytes, entry: _CompiledEntry) -> None:
        self._compiled[key] = entry
        self._compiled.move_to_end(key)
        while len(self._compiled) > self.compiled_cache_size:
            self._compiled.popitem(last=False)

    def _expiry_of(self, deps: Iterable[str]) -> datetime:
        expiry = _NEVER
        for url in deps:
            cached = self._documents.get(url)
            if cached is not None and cached.expires_at < expiry:
                expiry = cached.expires_at
        return expiry

    def _record_use(self, deps: Iterable[str], now: datetime) -> None:
        for url in deps:
            usage = self._usage.get(url)
            if usage is None:
                usage = self._usage[url] = _Usage()
            usage.hits += 1
            usage.last = now

    # -- documents ---------------------------------------------------------------------------

    async def _document(self, url: str) -> Mapping[str, Any]:
        hosted = self._hosted_document(url)
        if hosted is not None:
            return hosted
        now = self._now()
        cached = self._documents.get(url)
        if cached is not None and cached.expires_at > now:
            self._documents.move_to_end(url)
            return cached.document
        try:
            document = await self._fetch_shared(url)
        except LdContextNotAvailable:
            if cached is None:
                raise
            cached.expires_at = now + _STALE_RETRY  # serve stale rather than fail every request
            return cached.document
        self._store_document(url, document)
        return document

    def _hosted_document(self, url: str) -> Mapping[str, Any] | None:
        for lookup in self._hosted:
            document = lookup(url)
            if document is not None:
                return _checked_document(document, url)
        return None

    def _store_document(self, url: str, document: Mapping[str, Any]) -> None:
        now = self._now()
        self._documents[url] = _CachedDocument(document, now, now + self.ttl)
        self._documents.move_to_end(url)
        while len(self._documents) > self.cache_size:
            evicted, _ = self._documents.popitem(last=False)
            self._usage.pop(evicted, None)

    def _info(self, url: str, entry: _CachedDocument) -> CachedContextInfo:
        hits, last = self.usage(url)
        return CachedContextInfo(url, cached_local_id(url), entry.document, entry.fetched_at, hits, last)

    async def _fetch_shared(self, url: str) -> Mapping[str, Any]:
        """One HTTP fetch per URL at a time; concurrent callers await the same one."""
        future = self._inflight.get(url)
        if future is None:
            future = asyncio.ensure_future(self._fetch(url))
            self._inflight[url] = future
            future.add_done_callback(lambda done: self._fetch_done(url, done))
        return await asyncio.shield(future)

    def _fetch_done(self, url: str, future: asyncio.Future[Mapping[str, Any]]) -> None:
        self._inflight.pop(url, None)
        if not future.cancelled():
            future.exception()  # mark retrieved: callers that went away must not cause warnings

    async def _fetch(self, url: str) -> Mapping[str, Any]:
        body = await self._fetch_bytes(url)
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidContext(f"{url}의 @context가 JSON이 아님({exc}) / @context at {url} is not JSON: {exc}") from None
        return _checked_document(document, url)

    async def _fetch_bytes(self, url: str) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                async with self._http().stream("GET", url, headers={"Accept": _ACCEPT}) as response:
                    if not response.is_success:
                        raise LdContextNotAvailable(f"{url}의 @context: HTTP {response.status_code} / "
                                                    f"@context at {url}: HTTP {response.status_code}")
                    return await self._read_limited(response, url)
        except TimeoutError:
            raise LdContextNotAvailable(f"{url}의 @context: {self.timeout:g}초 안에 응답 없음 / "
                                        f"@context at {url}: no answer within {self.timeout:g} s") from None
        except httpx.InvalidURL as exc:
            raise InvalidContext(f"@context 참조 {url!r}이(가) 올바른 URL이 아님({exc}) / "
                                 f"@context reference {url!r} is not a valid URL: {exc}") from None
        except httpx.HTTPError as exc:
            raise LdContextNotAvailable(f"{url}의 @context를 가져올 수 없음({exc!r}) / "
                                        f"@context at {url} cannot be retrieved: {exc!r}") from None

    async def _read_limited(self, response: httpx.Response, url: str) -> bytes:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                raise InvalidContext(f"{url}의 @context가 {self.max_bytes}바이트보다 큼 / "
                                     f"@context at {url} is larger than {self.max_bytes} bytes")
        return bytes(body)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # The guard runs for every request the client sends, redirects included: the transport resolves
            # the host, checks every address and connects to a checked one. Through an environment proxy
            # (which resolves the name itself) a request hook checks the name only.
            guarded: dict[str, Any] = {}
            if self.block_private_networks:
                guard = AddressGuard(self.allowed_networks, "ngsild.context_allowed_networks")
                if any(k != "no" for k in urllib.request.getproxies_environment()):
                    guarded["event_hooks"] = {"request": [partial(_check_name, guard)]}
                else:
                    guarded["transport"] = _GuardedTransport(guard)
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), follow_redirects=True, **guarded)
            self._owns_client = True
        return self._client


async def _checked_addresses(guard: AddressGuard, request: httpx.Request) -> list[str]:
    """The checked addresses of a request's host (see ucity.core.netguard): a client-supplied Link header
    must not make the broker reach into the city's internal network (server-side request forgery)."""
    url = request.url
    try:
        return await guard.resolve(url.host, url.port or (443 if url.scheme == "https" else 80), f"@context URL {url}")
    except RefusedAddress as exc:
        raise ContextBadRequest(f"{exc.ko}(ngsild.context_block_private_networks가 거부함) / "
                                f"{exc.en}; refused by ngsild.context_block_private_networks") from None
    except OSError as exc:
        raise httpx.ConnectError(f"cannot resolve {url.host}: {exc}", request=request) from None


async def _check_name(guard: AddressGuard, request: httpx.Request) -> None:
    await _checked_addresses(guard, request)


class _GuardedTransport(httpx.AsyncBaseTransport):
    """Sends a request to a checked address of its host, never to the name again (a DNS answer that
    changes after the check cannot redirect it); Host and TLS (SNI, certificate) keep the name."""

    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        address = (await _checked_addresses(self.guard, request))[0]
        extensions = dict(request.extensions)
        if request.url.scheme == "https":
            extensions["sni_hostname"] = request.url.host
        direct = httpx.Request(request.method, request.url.copy_with(host=address), headers=request.headers,
                               stream=request.stream, extensions=extensions)
        return await self.inner.handle_async_request(direct)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _cache_key(ctx: Mapping[str, Any] | Sequence[Any]) -> bytes:
    try:
        return orjson.dumps(ctx, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise InvalidContext(f"@context가 JSON이 아님({exc}) / @context is not JSON: {exc}") from None


def _absolute_url(ref: str, base: str | None) -> str:
    try:
        url = urljoin(base, ref) if base is not None else ref
        scheme = urlsplit(url).scheme
    except ValueError:
        raise InvalidContext(f"@context 참조 {ref!r}이(가) 올바른 URL이 아님 / "
                             f"@context reference {ref!r} is not a valid URL") from None
    if scheme not in ("http", "https"):
        raise InvalidContext(f"@context 참조 {ref!r}이(가) http(s) URL이 아님 / @context reference {ref!r} is not an http(s) URL")
    return url


def _checked_document(document: Any, url: str) -> Mapping[str, Any]:
    if not isinstance(document, Mapping) or "@context" not in document:
        raise InvalidContext(f"{url}의 문서가 @context 구성원이 있는 JSON 객체가 아님 / "
                             f"the document at {url} is not a JSON object with an @context member")
    inner = document["@context"]
    if not (inner is None or isinstance(inner, str | Mapping | list)):
        raise InvalidContext(f"{url}의 @context 구성원은 객체, URL, 배열 중 하나여야 함 / "
                             f"the @context member at {url} must be an object, a URL or an array")
    return document


def cached_local_id(url: str) -> str:
    """The stable local id the registry gives a cached remote context."""
    return "c" + hashlib.blake2b(url.encode(), digest_size=10).hexdigest()


# --------------------------------------------------------------------------------------------
# The @context registry: /ngsi-ld/v1/jsonldContexts (CIM 009 §5.13)
# --------------------------------------------------------------------------------------------

ContextKind: TypeAlias = Literal["Hosted", "Cached", "ImplicitlyCreated"]
CONTEXT_KINDS: Final[tuple[ContextKind, ...]] = ("Hosted", "Cached", "ImplicitlyCreated")
JSONLD_CONTEXTS_PATH: Final = "/ngsi-ld/v1/jsonldContexts/"
_CORE_LOADED_AT: Final = datetime.now(UTC)  # the "createdAt" the core context is listed with


@dataclass(frozen=True, slots=True)
class StoredContext:
    """A context the broker hosts (kind Hosted or ImplicitlyCreated): what the store persists."""

    local_id: str
    url: str
    kind: ContextKind
    document: Mapping[str, Any]  # {"@context": ...}
    created_at: datetime

    def to_dict(self) -> JsonObject:
        """A JSON-ready dict (for the store's `contexts` table)."""
        return {
            "localId": self.local_id,
            "URL": self.url,
            "kind": self.kind,
            "document": dict(self.document),
            "createdAt": to_iso(self.created_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredContext:
        """The inverse of `to_dict`."""
        return cls(
            local_id=data["localId"],
            url=data["URL"],
            kind=data["kind"],
            document=data["document"],
            created_at=parse_iso(data["createdAt"]),
        )


SaveHook: TypeAlias = Callable[[StoredContext], Awaitable[None]]
DeleteHook: TypeAlias = Callable[[str], Awaitable[None]]  # argument: local_id


class ContextRegistry:
    """The @context management API, framework-free: methods take plain values, return plain
    dicts/lists, raise `ContextError`s (404 ResourceNotFound, 400 BadRequestData, 503).

    Hosted contexts live at `<base_url>/ngsi-ld/v1/jsonldContexts/<localId>`, `base_url` being the
    one the creating request reached the broker at (or the configured default); the registry
    plugs itself into its resolver so those URLs never cause HTTP, whichever host name a client
    uses for the broker. `save` / `delete` let the store
    persist hosted contexts (restore them at start with `restore`); without them they live in
    memory.
    """

    def __init__(
        self,
        base_url: str,
        resolver: ContextResolver | None = None,
        *,
        save: SaveHook | None = None,
        delete: DeleteHook | None = None,
        now: Now = _utcnow,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._owns_resolver = resolver is None
        self.resolver = resolver if resolver is not None else ContextResolver(now=now)
        self.resolver.add_hosted_source(self.hosted_document)
        self._save = save
        self._delete = delete
        self._now = now
        self._by_id: dict[str, StoredContext] = {}
        self._by_url: dict[str, StoredContext] = {}

    def url_for(self, local_id: str, base_url: str | None = None) -> str:
        """The URL of a hosted context, under `base_url` (default: the registry's)."""
        base = base_url.rstrip("/") if base_url else self.base_url
        return base + JSONLD_CONTEXTS_PATH + quote(local_id, safe="")

    def restore(self, records: Iterable[StoredContext]) -> None:
        """Load hosted contexts persisted earlier (at start, before serving requests)."""
        for record in records:
            self._remember(record)

    def hosted_document(self, url: str) -> Mapping[str, Any] | None:
        """The document of a context this broker hosts at `url`, else None (the resolver hook)."""
        record = self._by_url.get(url) or self._by_path(url)
        return None if record is None else record.document

    async def add(self, body: Any, base_url: str | None = None) -> str:
        """POST /jsonldContexts: host `body` (`{"@context": {...}}`); returns its URL (under `base_url`).

        The @context must be an object or an array; it is compiled first, so a context that is
        invalid or refers to an unreachable URL is refused.
        """
        document = _hosted_body(body)
        await self.resolver.compile(document["@context"])
        local_id = uuid.uuid4().hex
        record = StoredContext(local_id, self.url_for(local_id, base_url), "Hosted", document, self._now())
        await self._persist(record)
        return record.url

    async def add_implicit(self, context: Any) -> str:
        """Host an inline @context a request sent (kind ImplicitlyCreated); returns its URL.

        Idempotent: the same content always gets the same URL, so a broker can refer to an
        inline context (in notifications, Link headers) without piling up copies.
        """
        document = _hosted_body({"@context": context})
        local_id = "i" + hashlib.blake2b(_cache_key(context), digest_size=10).hexdigest()
        existing = self._by_id.get(local_id)
        if existing is not None:
            return existing.url
        await self.resolver.compile(context)
        record = StoredContext(local_id, self.url_for(local_id), "ImplicitlyCreated", document, self._now())
        await self._persist(record)
        return record.url

    # `list` is the operation's name; inside the class, `builtins.list` is the type.
    @overload
    def list(self, *, details: Literal[False] = False, kind: str | None = None) -> builtins.list[str]: ...

    @overload
    def list(self, *, details: Literal[True], kind: str | None = None) -> builtins.list[JsonObject]: ...

    @overload
    def list(self, *, details: bool, kind: str | None = None) -> builtins.list[str] | builtins.list[JsonObject]: ...

    def list(self, *, details: bool = False, kind: str | None = None) -> builtins.list[str] | builtins.list[JsonObject]:
        """GET /jsonldContexts: the URLs of known contexts, or their details, optionally by kind."""
        kinds = _kinds_filter(kind)
        infos = [info for info in self._all_details() if info["kind"] in kinds]
        if details:
            return infos
        return [info["URL"] for info in infos]

    def get(self, context_id: str, *, details: bool = False) -> JsonObject:
        """GET /jsonldContexts/{contextId}: the context document (or its details).

        `context_id` is a local id or the URL itself (URL-encoded or not).
        """
        record = self._find_hosted(context_id)
        if record is not None:
            return self._hosted_details(record) if details else _json_copy(record.document)
        cached = self._find_cached(context_id)
        if cached is not None:
            return self._cached_details(cached) if details else _json_copy(cached.document)
        if unquote(context_id) in CORE_CONTEXT_URLS:
            return _core_details(unquote(context_id)) if details else _json_copy(core_document())
        raise ContextNotFound(f"id가 {context_id!r}인 @context 없음 / no @context with id {context_id!r}")

    async def delete(self, context_id: str, *, reload: bool = False) -> None:
        """DELETE /jsonldContexts/{contextId}: drop a hosted context, or evict/reload a cached one."""
        if unquote(context_id) in CORE_CONTEXT_URLS:
            raise ContextBadRequest("NGSI-LD 핵심 @context는 지우거나 다시 읽을 수 없음 / "
                                    "the NGSI-LD core @context cannot be deleted or reloaded")
        record = self._find_hosted(context_id)
        if record is not None:
            if reload:
                raise ContextBadRequest(f"다시 읽기는 캐시된 @context에만 씀({record.url}은(는) {record.kind}) / "
                                        f"reload applies to cached @contexts only; {record.url} is {record.kind}")
            await self._forget(record)
            return
        cached = self._find_cached(context_id)
        if cached is None:
            raise ContextNotFound(f"id가 {context_id!r}인 @context 없음 / no @context with id {context_id!r}")
        if reload:
            await self.resolver.reload(cached.url)
        else:
            self.resolver.invalidate(cached.url)

    async def aclose(self) -> None:
        """Close the resolver if this registry created it."""
        if self._owns_resolver:
            await self.resolver.aclose()

    # -- internals ---------------------------------------------------------------------------

    async def _persist(self, record: StoredContext) -> None:
        if self._save is not None:
            await self._save(record)  # persisted first: a failed save must not leave a phantom
        self._remember(record)

    def _remember(self, record: StoredContext) -> None:
        self._by_id[record.local_id] = record
        self._by_url[record.url] = record
        self.resolver.invalidate(record.url)  # a restored/replaced record must not reuse old results

    async def _forget(self, record: StoredContext) -> None:
        if self._delete is not None:
            await self._delete(record.local_id)
        self._by_id.pop(record.local_id, None)
        self._by_url.pop(record.url, None)
        self.resolver.invalidate(record.url)

    def _by_path(self, url: str) -> StoredContext | None:
        """A hosted context named through another host name of this broker (same path, same local id).

        Local ids are random (or content hashes), so another server's URL cannot name one by chance.
        """
        path = urlsplit(url).path
        if not path.startswith(JSONLD_CONTEXTS_PATH):
            return None
        return self._by_id.get(unquote(path[len(JSONLD_CONTEXTS_PATH):]))

    def _find_hosted(self, context_id: str) -> StoredContext | None:
        return self._by_id.get(context_id) or self._by_url.get(context_id) or self._by_url.get(unquote(context_id))

    def _find_cached(self, context_id: str) -> CachedContextInfo | None:
        by_url = self.resolver.cached_info(context_id) or self.resolver.cached_info(unquote(context_id))
        if by_url is not None:
            return by_url
        return next((info for info in self.resolver.cached() if info.local_id == context_id), None)

    def _all_details(self) -> builtins.list[JsonObject]:
        hosted = [self._hosted_details(record) for record in self._by_id.values()]
        cached = [self._cached_details(info) for info in self.resolver.cached()]
        return hosted + cached

    def _hosted_details(self, record: StoredContext) -> JsonObject:
        hits, last = self.resolver.usage(record.url)
        return _details(record.url, record.local_id, record.kind, record.created_at, hits, last)

    def _cached_details(self, info: CachedContextInfo) -> JsonObject:
        return _details(info.url, info.local_id, "Cached", info.fetched_at, info.hits, info.last_usage)


def _hosted_body(body: Any) -> JsonObject:
    if not isinstance(body, Mapping) or "@context" not in body:
        raise ContextBadRequest('본문은 "@context" 구성원이 있는 JSON 객체여야 함 / '
                                'the body must be a JSON object with an "@context" member')
    context = body["@context"]
    if not isinstance(context, Mapping | list):
        raise ContextBadRequest("올릴 @context는 JSON 객체나 배열이어야 함 / "
                                "the @context to host must be a JSON object or an array")
    try:
        return {"@context": _json_copy(context)}  # our own copy: the caller may reuse its body
    except InvalidContext:
        raise ContextBadRequest("올릴 @context가 JSON이 아님 / the @context to host is not JSON") from None


def _json_copy(value: Any) -> Any:
    """A deep copy of JSON data (documents handed out must not alias the stored ones)."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError as exc:
        raise InvalidContext(f"JSON이 아님({exc}) / not JSON: {exc}") from None


def _kinds_filter(kind: str | None) -> frozenset[str]:
    if kind is None:
        return frozenset(CONTEXT_KINDS)
    if kind not in CONTEXT_KINDS:
        raise ContextBadRequest(f"kind는 {', '.join(CONTEXT_KINDS)} 중 하나여야 함({kind!r}) / "
                                f"kind must be one of {', '.join(CONTEXT_KINDS)}, not {kind!r}")
    return frozenset({kind})


def _details(
    url: str, local_id: str, kind: ContextKind, timestamp: datetime, hits: int, last: datetime | None
) -> JsonObject:
    # CIM 009 v1.9.1 §5.13.3.5 names the time of storing `createdAt`.
    info: JsonObject = {"URL": url, "localId": local_id, "kind": kind, "createdAt": to_iso(timestamp)}
    if last is not None:
        info["lastUsage"] = to_iso(last)
    info["numberOfHits"] = hits
    return info


def _core_details(url: str) -> JsonObject:
    return {"URL": url, "localId": "core", "kind": "Cached", "createdAt": to_iso(_CORE_LOADED_AT)}


__all__ = [
    "CONTEXT_KINDS",
    "CORE_CONTEXT_FILE",
    "CORE_CONTEXT_URL",
    "CORE_CONTEXT_URLS",
    "DEFAULT_VOCAB",
    "ENTITY_MEMBERS",
    "INSTANCE_MEMBERS",
    "VOCAB_MEMBERS",
    "CachedContextInfo",
    "CompiledContext",
    "ContextBadRequest",
    "ContextError",
    "ContextInput",
    "ContextKind",
    "ContextNotFound",
    "ContextRegistry",
    "ContextResolver",
    "InvalidContext",
    "LdContextNotAvailable",
    "StoredContext",
    "TermDefinition",
    "cached_local_id",
    "compact_attrs",
    "compact_entity",
    "compact_names",
    "compile_local",
    "core_context",
    "core_document",
    "expand_attrs",
    "expand_entity",
    "expand_names",
]
