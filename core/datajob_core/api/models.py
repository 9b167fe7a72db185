"""The DataJob API (datajob.dev/v1alpha1), defined once as pydantic v2 models.

The CRD in crds/ is generated from these models (``make crds``), including the CEL rules that make the API
server reject bad specs; the same rules are enforced here, so local mode gives the same errors.
"""

from __future__ import annotations

import codecs
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from datajob_core.api import aggregate_options, sql_check
from datajob_core.api.pod_policy import annotation_violations, annotations_schema, template_schema, violations
from datajob_core.api.sql_check import MAX_SQL_CHARS
from datajob_core.data.locations import output_inside_input
from datajob_core.data.planning import byte_quantity, open_cost_bytes

GROUP = "datajob.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DataJob"

# Kubernetes' own quantity pattern (resource.Quantity).
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
EXTENDED_RESOURCE_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
FUNCTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
# A label key (a taint's key is one): an optional DNS-subdomain prefix and a name of at most 63 characters.
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# The largest integer every JSON reader holds exactly (a float64 mantissa): a bound at int64 max would
# still admit 9223372036854775808, which the API server reads as a float equal to it.
MAX_EXACT_INT = 2**53 - 1
NO_NUL_PATTERN = r"^[^\x00]*$"  # a NUL byte cannot be passed to a process in its environment
# Spellings (lower case, no - or _) of encodings records cannot be split in (_splits_at_newline_bytes).
UNSPLITTABLE_ENCODINGS = (
    r"^(utf(16|32|7)|u(16|32|7)|ucs(2|4)|unicode(littleunmarked|bigunmarked)?|cp(037|273|424|500|875|1026|1140)"
    r"|ibm(037|039|273|424|500|875|1026|1140)|ebcdic.*|csibm.*|(cs)?iso2022.*|hz.*|(raw)?unicodeescape"
    r"|punycode|idna|undefined|mac(arabic|farsi))"
)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_PROFILES = 8
MAX_PROFILE_NAME = 20  # profile names go into object names: <job>-<profile> ResourceClaimTemplates
HARDWARE_MESSAGE = (
    "spec.resources must not be set with spec.hardware: each hardware profile has its own resources"
)
CAPS_MESSAGE = (
    "spec.hardware: every profile has a workers cap and together they hold fewer than spec.workers; "
    "leave the last profile uncapped"
)
DEVICES_MESSAGE = "devices needs exactly one of deviceClassName and firstAvailable"
MAX_URI = 4096
MAX_NAME = 63
NAME_RULE = f"size(self.metadata.name) <= {MAX_NAME}"
NAME_MESSAGE = (
    f"metadata.name must be at most {MAX_NAME} characters: it is the value of the datajob.dev/job label on "
    "the job's pods, and labels hold 63"
)

_QUANTITY_SUFFIX = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_QUANTITY_SUFFIX.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60})


def quantity_value(text: str) -> float:
    """A Kubernetes quantity as a number ("500m" -> 0.5, "1Gi" -> 1073741824, "1e3" -> 1000)."""
    for suffix in sorted(_QUANTITY_SUFFIX, key=len, reverse=True):
        if suffix and text.endswith(suffix) and not (suffix == "E" and "e" in text.lower()[:-1]):
            return float(text[: -len(suffix)]) * _QUANTITY_SUFFIX[suffix]
    return float(text)


def _rule(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _rules(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class EnvVar(_Model):
    """An environment variable for the worker container."""

    name: str = Field(description="Variable name.", pattern=ENV_NAME_PATTERN, min_length=1, max_length=253)
    value: str = Field(default="", description="Variable value.", max_length=32768, pattern=NO_NUL_PATTERN)


class Partitioning(_Model):
    """How the input is split into shards."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "self.mode != 'count' || has(self.shards)",
                "spec.input.partitioning.shards is required when mode is count",
                ".shards",
            ),
            _rule(
                "self.mode == 'count' || !has(self.shards)",
                "spec.input.partitioning.shards is only allowed when mode is count",
                ".shards",
            ),
            _rule(
                "self.mode != 'size' || has(self.targetShardSize)",
                "spec.input.partitioning.targetShardSize is required when mode is size",
                ".targetShardSize",
            ),
            _rule(
                "self.mode == 'size' || !has(self.targetShardSize)",
                "spec.input.partitioning.targetShardSize is only allowed when mode is size",
                ".targetShardSize",
            ),
            _rule(
                "!has(self.targetShardSize) || (isQuantity(self.targetShardSize) && "
                "quantity(self.targetShardSize).compareTo(quantity('1')) >= 0 && "
                "quantity(self.targetShardSize).compareTo(quantity('4Ei')) <= 0)",
                "spec.input.partitioning.targetShardSize must be a quantity of at least 1 byte (e.g. 64Mi)",
                ".targetShardSize",
            ),
            _rule(
                "self.mode == 'size' || (!has(self.combineFiles) && !has(self.fileOpenCost))",
                "spec.input.partitioning.combineFiles and fileOpenCost are only allowed when mode is size",
                ".mode",
            ),
            _rule(
                "!has(self.fileOpenCost) || (isQuantity(self.fileOpenCost) && "
                "quantity(self.fileOpenCost).compareTo(quantity('0')) >= 0 && "
                "quantity(self.fileOpenCost).compareTo(quantity('1Gi')) <= 0)",
                "spec.input.partitioning.fileOpenCost must be a quantity from 0 to 1Gi (e.g. 64Ki)",
                ".fileOpenCost",
            ),
        )
    )

    mode: Literal["count", "perFile", "size"] = Field(
        default="perFile",
        description=(
            "perFile: one shard per input file. size: files are split into byte ranges of "
            "targetShardSize, on record boundaries. count: the input is split into `shards` near-equal "
            "byte ranges."
        ),
    )
    shards: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Number of shards (mode count only)."
    )
    target_shard_size: str | None = Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        max_length=64,
        description="Bytes per shard as a quantity, e.g. 64Mi (mode size only).",
    )
    combine_files: bool | None = Field(
        default=None,
        description=(
            "Mode size only; default true. Consecutive files smaller than targetShardSize share a shard of "
            "at most targetShardSize, each counted as its size plus fileOpenCost (lowered to 1/128 of the "
            "input when the whole input is small, so packing never makes fewer than 128 shards where one "
            "file per shard made more). false: every file starts its own shard."
        ),
    )
    file_open_cost: str | None = Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        max_length=64,
        description=(
            "Mode size only; default 64Ki. What opening a file costs a shard, in bytes it could have read "
            "instead, when small files are combined; raise it for object stores (Spark uses 4Mi)."
        ),
    )

    @model_validator(mode="after")
    def _mode_fields(self) -> Partitioning:
        if self.mode == "count" and self.shards is None:
            raise ValueError("spec.input.partitioning.shards is required when mode is count")
        if self.mode != "count" and self.shards is not None:
            raise ValueError("spec.input.partitioning.shards is only allowed when mode is count")
        if self.mode == "size" and self.target_shard_size is None:
            raise ValueError("spec.input.partitioning.targetShardSize is required when mode is size")
        if self.mode != "size" and self.target_shard_size is not None:
            raise ValueError("spec.input.partitioning.targetShardSize is only allowed when mode is size")
        if self.target_shard_size is not None:
            try:
                byte_quantity(self.target_shard_size)
            except ValueError as error:
                raise ValueError(f"spec.input.partitioning.targetShardSize: {error}") from None
        if self.mode != "size" and (self.combine_files is not None or self.file_open_cost is not None):
            raise ValueError(
                "spec.input.partitioning.combineFiles and fileOpenCost are only allowed when mode is size"
            )
        if self.file_open_cost is not None:
            open_cost_bytes(self.file_open_cost)  # raises ValueError naming the field
        return self


class Input(_Model):
    """What to read. Immutable once the job exists: shard numbers refer to it."""

    uris: list[str] = Field(
        min_length=1,
        max_length=1000,
        description="Input locations: local paths, globs (e.g. /data/*.txt) or fsspec URIs (s3://, gs://).",
        json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": MAX_URI}},
    )
    format: Literal["text", "jsonl", "csv", "parquet"] = Field(
        default="text", description="Record format of the input files."
    )
    partitioning: Partitioning = Field(
        default_factory=Partitioning, description="How the input is split into shards."
    )
    encoding: str = Field(
        default="utf-8",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        max_length=64,
        description=(
            "Text encoding of text, jsonl and csv input (a codec name: utf-8, latin-1, cp1252, shift_jis). "
            "Encodings in which a newline or a quote is not its ASCII byte, or whose other characters "
            "contain those bytes (UTF-16/32, EBCDIC, ISO-2022, HZ, UTF-7), are refused: convert to UTF-8."
        ),
        json_schema_extra=_rules(
            # The common spellings, at admission; the operator and `datajob validate` check every codec.
            _rule(
                "!self.lowerAscii().replace('-', '').replace('_', '').matches('"
                + UNSPLITTABLE_ENCODINGS
                + "')",
                "is not supported: records are found by the bytes of newline and quote, which this encoding "
                "writes differently or uses inside other characters; convert the input to UTF-8",
            )
        ),
    )
    multi_line: bool = Field(
        default=False,
        description=(
            "CSV only: records may span lines (quoted fields with newlines, RFC 4180), also in files split "
            "into several shards (partitioning size or count): each shard then reads the file up to its "
            "start once, to find the true record boundary. false (as Spark's default): in a split file, a "
            "record spanning lines fails its shard with a message saying so; a file read whole (perFile) "
            "may always hold them."
        ),
    )
    max_bad_record_ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "With badRecordPolicy Skip or DeadLetter: the job fails (TooManyBadRecords, before its output "
            "is committed) when more than this fraction of the records read were malformed. Unset: only "
            "a job that skipped every record it read fails. A job that skipped any has the condition "
            "RecordsSkipped."
        ),
    )
    incremental: bool = Field(
        default=False,
        description=(
            "Process only objects no earlier run of this job took: the output keeps a batch log "
            "(_datajob/batches/) naming every object each run committed, and a new run (a re-applied "
            "DataJob, or datajob run again) plans only objects not in it. wordcount, aggregate and SQL merge "
            "the new result with the previous one (result); other processors append (batches/<N>/result). "
            "An object rewritten after a run took it is not processed again: it is reported (InputChanged). "
            "Implied by mode Continuous. See docs/design.md, 'Incremental and continuous runs'."
        ),
    )
    bad_record_policy: Literal["Fail", "Skip", "DeadLetter"] = Field(
        default="Fail",
        description=(
            "What to do with a record that cannot be decoded or parsed (invalid bytes for the encoding, "
            "invalid JSON, a CSV row whose field count differs from the header's). Fail: the shard fails "
            "at once, its reason naming the file, byte offset and line (Spark's FAILFAST). Skip: drop and "
            "count it (DROPMALFORMED). DeadLetter: drop, count, and write it with its file, offset and error "
            "to _bad_records/ in the output, committed with the shard."
        ),
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            info = codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"spec.input.encoding: unknown encoding {encoding!r}") from None
        if not getattr(info, "_is_text_encoding", True):
            raise ValueError(f"spec.input.encoding: {encoding!r} is not a text encoding")
        if not _splits_at_newline_bytes(info):
            raise ValueError(
                f"spec.input.encoding: {encoding!r} is not supported: records are found by the bytes of "
                "newline and quote, which this encoding writes differently or uses inside other "
                "characters (UTF-16/32, EBCDIC, ISO-2022, HZ, UTF-7); convert the input to UTF-8"
            )
        return encoding


# Stateful or escaping codecs whose other characters can contain the bytes of '"' or a newline.
_UNSPLITTABLE_CODECS = re.compile(r"^(utf_7|hz|iso2022_.*|punycode|idna|undefined|(raw_)?unicode_escape)$")


def _splits_at_newline_bytes(info: codecs.CodecInfo) -> bool:
    """Whether records can be found at the ASCII bytes of newline, carriage return, quote and comma."""
    if _UNSPLITTABLE_CODECS.match(info.name.replace("-", "_")):
        return False
    probe = '\n\r",'
    try:
        return info.decode(probe.encode("ascii"))[0] == probe and all(
            info.encode(c)[0].removeprefix(codecs.BOM_UTF8) == c.encode("ascii") for c in probe
        )
    except (UnicodeError, ValueError):
        return False


OUTPUT_URI_MESSAGE = (
    "spec.output.uri must be a filesystem path, file://..., or an object-store prefix s3://bucket/prefix "
    "(gs:// and az:// through fsspec's gcsfs and adlfs)"
)
OUTPUT_SCHEMES = ("file", "s3", "gs", "az")


class Output(_Model):
    """Where committed results go. Immutable once the job exists."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "!self.uri.matches('^[A-Za-z][A-Za-z0-9+.-]*://') || self.uri.matches('^(file|s3|gs|az)://')",
                OUTPUT_URI_MESSAGE,
                ".uri",
            )
        )
    )

    uri: str = Field(
        min_length=1,
        max_length=MAX_URI,
        description=(
            "Output location: an object-store prefix (s3://bucket/prefix; see spec.storage), or a POSIX path "
            "(local disk in local mode, a shared ReadWriteMany volume in a cluster). It belongs to one job "
            "(_datajob/owner.json); another job's is refused."
        ),
    )
    overwrite: bool = Field(
        default=False,
        description=(
            "If the output belongs to another job (or the input or processor changed since it was written), "
            "remove what that job wrote and start afresh, instead of failing with OutputInUse."
        ),
    )
    resume: bool = Field(
        default=False,
        description=(
            "Continue an earlier run's work found in this output instead of refusing it: the output belongs "
            "to the job's namespace, name and computation (input, processor, reduce, output) rather than to "
            "its UID, so a DataJob deleted and re-applied, restored from an older etcd snapshot, or copied "
            "to another cluster (MultiKueue) rebuilds its ledger from the commit records and checkpoints "
            "there: committed shards are not run again, interrupted ones resume from their newest readable "
            "checkpoint. The input must plan to the same shards (else ResumeMismatch). Batch jobs only; not "
            "with output.overwrite or spec.splitting (docs/design.md, Rebuilding the ledger)."
        ),
    )
    format: Literal["jsonl", "parquet"] | None = Field(
        default=None,
        description=(
            "How part-*, part-r-* and result are written: jsonl (the default: one output line each) or "
            "parquet (one row per output line: a JSON object's keys as columns; word count as word, count; "
            "other lines as one column, line). The _SUCCESS manifest names the format."
        ),
    )

    @model_validator(mode="after")
    def _path_only(self) -> Output:
        scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", self.uri)
        if scheme and scheme.group(1) not in OUTPUT_SCHEMES:
            raise ValueError(OUTPUT_URI_MESSAGE)
        return self


class Storage(_Model):
    """How workers (and the operator, for planning) reach object-store input and output."""

    endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/.*)?$",
        max_length=MAX_URI,
        description=(
            "S3 endpoint URL for S3-compatible stores (MinIO, Ceph, Cloudflare R2), e.g. "
            "http://minio.storage:9000; unset for AWS S3."
        ),
    )
    region: str | None = Field(
        default=None, pattern=r"^[a-z0-9-]+$", max_length=64, description="S3 region, e.g. eu-west-1."
    )
    credentials_secret: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description=(
            "A Secret in the job's namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (optionally "
            "AWS_SESSION_TOKEN). Mounted into the workers as environment variables and read by the "
            "operator to list the input; never logged or copied into the status. Unset: the workers' own "
            "credentials (an IAM role for service accounts, instance metadata)."
        ),
    )


# Options a built-in processor cannot work without.
REQUIRED_OPTIONS = {"grep": "pattern", "aggregate": "groupBy"}


class Processor(_Model):
    """What the worker does with each record. Exactly one of builtin, function, sql or exec."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "(has(self.builtin) ? 1 : 0) + (has(self.function) ? 1 : 0) + (has(self.exec) ? 1 : 0) "
                "+ (has(self.sql) ? 1 : 0) == 1",
                "spec.processor: set exactly one of builtin, function, sql or exec",
            ),
            _rule(
                "(!has(self.batchSize) && !has(self.batchFormat)) || has(self.function)",
                "spec.processor.batchSize and batchFormat need spec.processor.function (a class)",
            ),
            *[
                _rule(
                    f"!has(self.builtin) || self.builtin != '{builtin}' || "
                    f"(has(self.options) && '{option}' in self.options && self.options['{option}'] != '')",
                    f"spec.processor.options.{option} is required for builtin {builtin}",
                    ".options",
                )
                for builtin, option in REQUIRED_OPTIONS.items()
            ],
        )
    )

    builtin: Literal["wordcount", "grep", "aggregate", "transform"] | None = Field(
        default=None, description="A built-in processor."
    )
    function: str | None = Field(
        default=None,
        pattern=FUNCTION_PATTERN,
        max_length=512,
        description=(
            "User code in the worker image: module:function, called once per record, or module:Class, "
            "the batch form: setup() once per worker process, process_batch(batch) on batchSize records "
            "at a time, teardown() at the end."
        ),
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=65536,
        description="Records per process_batch call of the batch form (a class in function). Default 256.",
    )
    batch_format: Literal["records", "arrow"] | None = Field(
        default=None,
        description=(
            "What process_batch gets: a list of records (records, the default) or a pyarrow.RecordBatch "
            "(arrow; text input is one column, line)."
        ),
    )
    sql: str | None = Field(
        default=None,
        max_length=MAX_SQL_CHARS,
        description=(
            "One SELECT over the table input, run with DuckDB on each batch of each shard; the rows it "
            "returns are the output (JSON Lines, columns in SELECT order). A query that needs all rows at "
            "once (aggregates, GROUP BY, DISTINCT, ORDER BY, LIMIT, windows) needs spec.reduce.sql to merge "
            "the batches' results. Parsed at admission."
        ),
    )
    exec: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="A program run once per shard, with the shard's location and resume point in env vars.",
    )
    options: dict[str, str] = Field(default_factory=dict, description="Options passed to the processor.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Processor:
        if sum(x is not None for x in (self.builtin, self.function, self.sql, self.exec)) != 1:
            raise ValueError("spec.processor: set exactly one of builtin, function, sql or exec")
        if (self.batch_size is not None or self.batch_format is not None) and self.function is None:
            raise ValueError(
                "spec.processor.batchSize and batchFormat need spec.processor.function (a class)"
            )
        option = REQUIRED_OPTIONS.get(self.builtin or "")
        if option and not self.options.get(option):
            raise ValueError(f"spec.processor.options.{option} is required for builtin {self.builtin}")
        if self.builtin == "aggregate":
            aggregate_options.read(self.options)
        if self.builtin == "grep":
            # CEL cannot compile a regex; local mode and the operator (before any pod starts) do.
            try:
                re.compile(self.options["pattern"])
            except re.error as error:
                raise ValueError(
                    f"spec.processor.options.pattern is not a valid regular expression: {error}"
                ) from None
        return self


class Gpu(_Model):
    """GPUs per worker, and which kind."""

    count: int = Field(ge=1, le=16, description="GPUs per worker pod (requests = limits).")
    resource_name: str = Field(
        default="nvidia.com/gpu",
        pattern=EXTENDED_RESOURCE_PATTERN,
        max_length=253,
        description="The extended resource the device plugin advertises, e.g. nvidia.com/gpu or amd.com/gpu.",
    )
    product: str | None = Field(
        default=None,
        max_length=63,
        description="GPU model required, matched against the node label productLabel (e.g. Tesla-T4).",
    )
    product_label: str = Field(
        default="nvidia.com/gpu.product",
        max_length=317,
        description="Node label that carries the GPU model (set by NVIDIA GPU feature discovery).",
    )


def _positive_quantities(where: str) -> dict[str, Any]:
    return _rules(
        _rule(
            "quantity(self.cpu).isGreaterThan(quantity('0'))",
            f"{where}.cpu must be greater than 0",
            ".cpu",
        ),
        _rule(
            "quantity(self.memory).isGreaterThan(quantity('0'))",
            f"{where}.memory must be greater than 0",
            ".memory",
        ),
    )


class Resources(_Model):
    """Hardware per worker pod: requests (and limits for memory, storage and GPUs)."""

    model_config = ConfigDict(json_schema_extra=_positive_quantities("spec.resources"))
    _where: ClassVar[str] = "spec.resources"

    cpu: str = Field(
        default="1", pattern=QUANTITY_PATTERN, max_length=64, description="CPU request, e.g. 500m or 4."
    )
    memory: str = Field(
        default="1Gi",
        pattern=QUANTITY_PATTERN,
        max_length=64,
        description="Memory request and limit, e.g. 4Gi.",
    )
    ephemeral_storage: str | None = Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        max_length=64,
        description="Local scratch space request and limit.",
    )
    gpu: Gpu | None = Field(default=None, description="GPUs per worker; omit for CPU-only workers.")

    @model_validator(mode="after")
    def _positive(self) -> Resources:
        for name in ("cpu", "memory"):
            if quantity_value(getattr(self, name)) <= 0:
                raise ValueError(f"{self._where}.{name} must be greater than 0")
        return self


class ProfileResources(Resources):
    """Hardware per worker pod of one hardware profile."""

    model_config = ConfigDict(json_schema_extra=_positive_quantities("a hardware profile's resources"))
    _where: ClassVar[str] = "a hardware profile's resources"


class DeviceOption(_Model):
    """One device request of Dynamic Resource Allocation: a DeviceClass, how many, and CEL selectors."""

    device_class_name: str = Field(
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="The DeviceClass (resource.k8s.io/v1) the devices come from, e.g. gpu.nvidia.com.",
    )
    count: int = Field(default=1, ge=1, le=16, description="Devices per worker pod.")
    selectors: list[str] | None = Field(
        default=None,
        max_length=8,
        description=(
            "CEL expressions a device must satisfy, as in a ResourceClaim's selectors, e.g. "
            "device.attributes['gpu.nvidia.com'].productName == 'NVIDIA H100 80GB HBM3'."
        ),
        json_schema_extra={"items": {"type": "string", "maxLength": 1024}},
    )


class Devices(_Model):
    """Devices through Dynamic Resource Allocation: the operator creates one ResourceClaimTemplate per job
    and profile, and the scheduler allocates each worker its own claim."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "has(self.deviceClassName) != has(self.firstAvailable)",
                DEVICES_MESSAGE,
            )
        )
    )

    device_class_name: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="The DeviceClass the devices come from (or firstAvailable: one of the two).",
    )
    count: int = Field(default=1, ge=1, le=16, description="Devices per worker pod, with deviceClassName.")
    selectors: list[str] | None = Field(
        default=None,
        max_length=8,
        description="CEL selectors, with deviceClassName.",
        json_schema_extra={"items": {"type": "string", "maxLength": 1024}},
    )
    first_available: list[DeviceOption] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description=(
            "Alternatives in order of preference: the scheduler allocates the first that is available "
            "(DRA's prioritized list, KEP-4816)."
        ),
    )

    @model_validator(mode="after")
    def _one_form(self) -> Devices:
        if (self.device_class_name is None) == (self.first_available is None):
            raise ValueError(DEVICES_MESSAGE)
        return self


class HardwareProfile(_Model):
    """One hardware shape workers may run on; profiles are tried in order (see docs/operations.md)."""

    name: str = Field(
        pattern=DNS_LABEL_PATTERN,
        max_length=MAX_PROFILE_NAME,
        description="The profile's name, in status, events, pod labels and the _SUCCESS manifest.",
    )
    resources: ProfileResources = Field(
        default_factory=ProfileResources, description="Requests and limits of a worker on this profile."
    )
    devices: Devices | None = Field(
        default=None, description="Devices allocated by Dynamic Resource Allocation (ResourceClaims)."
    )
    node_selector: dict[str, str] | None = Field(
        default=None,
        description="Node labels a worker on this profile requires (added to spec.nodeSelector).",
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=64, description="Tolerations of this profile (added to spec.tolerations)."
    )
    architecture: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]+$",
        max_length=63,
        description="CPU architecture, the node label kubernetes.io/arch (amd64, arm64, ...).",
    )
    capacity_type: Literal["spot", "on-demand"] | None = Field(
        default=None, description="spot or on-demand nodes, matched on capacityTypeLabel."
    )
    capacity_type_label: str = Field(
        default="karpenter.sh/capacity-type",
        pattern=LABEL_KEY_PATTERN,
        max_length=317,
        description=(
            "The node label saying spot or on-demand, with those values (Karpenter's; set it for other "
            "provisioners)."
        ),
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description="At most this many workers run on this profile at once (a mixed fleet); unset: no cap.",
    )
    wait_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description=(
            "How long a worker of this profile may stay unschedulable before the next profile is tried."
        ),
    )


class Toleration(_Model):
    """A toleration added to worker pods (see the Kubernetes Toleration type)."""

    key: str | None = Field(
        default=None,
        max_length=317,
        pattern=LABEL_KEY_PATTERN,
        description="Taint key to tolerate (a label key).",
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (default)."
    )
    value: str | None = Field(default=None, max_length=63, description="Taint value, with operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty tolerates all."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, le=MAX_EXACT_INT, description="How long a NoExecute taint is tolerated."
    )


class Backoff(_Model):
    """Exponential backoff between restarts of a crash-looping worker slot."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "self.initialSeconds <= self.maxSeconds",
                "spec.retryPolicy.backoff.initialSeconds must not exceed maxSeconds",
                ".initialSeconds",
            )
        )
    )

    initial_seconds: int = Field(default=10, ge=1, le=3600, description="Wait before the first restart.")
    max_seconds: int = Field(
        default=300, ge=1, le=86400, description="Longest wait; the wait doubles up to it."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Backoff:
        if self.initial_seconds > self.max_seconds:
            raise ValueError("spec.retryPolicy.backoff.initialSeconds must not exceed maxSeconds")
        return self


class OnExitCodes(_Model):
    """Which exit codes of the worker container a rule matches."""

    operator: Literal["In", "NotIn"] = Field(description="In: one of values. NotIn: none of values.")
    values: list[int] = Field(
        min_length=1,
        max_length=255,
        description="Exit codes (0-255; a process killed by signal N exits with 128+N).",
        json_schema_extra={"items": {"type": "integer", "minimum": 0, "maximum": 255}},
    )


class PodFailurePolicyRule(_Model):
    """What a worker's exit code means, as in the Kubernetes Job's podFailurePolicy."""

    action: Literal["Ignore", "Count", "FailShard", "FailJob"] = Field(
        description=(
            "Ignore: retriable, charged to nobody. Count: charge the shard being processed one attempt "
            "(the default for any failure). FailShard: the shard being processed fails at once. FailJob: "
            "the job fails."
        )
    )
    on_exit_codes: OnExitCodes = Field(description="The exit codes this rule applies to.")


class PodFailurePolicy(_Model):
    """Exit-code rules, first match wins. Disruptions (eviction, preemption, drain, node loss, the
    DisruptionTarget condition) are always Ignore."""

    rules: list[PodFailurePolicyRule] = Field(
        default_factory=list, max_length=20, description="Rules, first match wins."
    )


class RetryPolicy(_Model):
    """How failures are retried, and how many the job tolerates."""

    max_shard_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Attempts per shard (crashes and reported failures) before it fails.",
    )
    max_worker_restarts: int = Field(
        default=10, ge=0, le=10000, description="Restarts per worker slot before the job fails (crash loop)."
    )
    backoff: Backoff = Field(default_factory=Backoff, description="Backoff between worker restarts.")
    max_failed_shards: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Permanently failed shards tolerated; one more fails the job.",
    )
    pod_failure_policy: PodFailurePolicy | None = Field(
        default=None,
        description="Which exit codes are the shard's fault, which are retriable without charge.",
    )
    shard_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=604800,
        description=(
            "Time limit of one attempt of one map shard (from its start or resume; builtin and function "
            "processors, not exec, reduce tasks or the job commit). On expiry the worker ends (exit code "
            "124) and the shard is charged, with a reason naming the record it was at. With "
            "spec.speculation.enabled, an attempt that has used half of it gets a backup attempt, which "
            "takes the shard over when the original runs out: the shard fails only when the backup runs "
            "out too. Default: none."
        ),
    )
    record_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=86400,
        description=(
            "Time limit of one call of a user function (processor.function, a mapper) on one record. On "
            "expiry the worker ends (exit code 124) and the shard is charged, with a reason naming the "
            "record. Default: none."
        ),
    )


class Speculation(_Model):
    """Backup attempts for straggling shards (MapReduce's backup tasks, Spark's spark.speculation)."""

    enabled: bool = Field(default=False, description="Start backup attempts for straggling map shards.")
    quantile: float = Field(
        default=0.75,
        ge=0,
        le=1,
        description="Fraction of map shards that must have finished before any shard is judged (Spark's).",
    )
    multiplier: float = Field(
        default=1.5,
        ge=1,
        le=100,
        description=(
            "A shard is a straggler when its attempt has run this many times as long as its size needs at "
            "the median rate of finished attempts, and reads bytes this many times slower than that rate."
        ),
    )
    min_runtime_seconds: int = Field(
        default=10, ge=0, le=86400, description="No attempt younger than this is judged."
    )
    max_backups: int = Field(
        default=1, ge=1, le=1000, description="Backup attempts running at once, each on an idle worker."
    )


class Continuous(_Model):
    """How a continuous job (spec.mode Continuous) discovers and batches new input."""

    poll_seconds: int = Field(
        default=10,
        ge=1,
        le=86400,
        description="How often the input is listed for new objects while no batch runs.",
    )
    max_batch_objects: int = Field(
        default=10000,
        ge=1,
        le=100000,
        description="The most objects one batch takes (oldest first); the rest wait for the next batch.",
    )


class Autoscaling(_Model):
    """Workers that follow the backlog (spec.mode Continuous)."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "self.minWorkers <= self.maxWorkers",
                "spec.autoscaling.minWorkers must not exceed spec.autoscaling.maxWorkers",
                ".minWorkers",
            )
        )
    )

    min_workers: int = Field(
        default=0, ge=0, le=10000, description="Workers kept while no input waits (0: none, scale to zero)."
    )
    max_workers: int = Field(default=1, ge=1, le=10000, description="The most workers a backlog gets.")
    objects_per_worker: int = Field(
        default=16,
        ge=1,
        le=1000000,
        description="Pending objects per worker: the backlog over this, within min and max, is the size.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_workers > self.max_workers:
            raise ValueError("spec.autoscaling.minWorkers must not exceed spec.autoscaling.maxWorkers")
        return self


class Splitting(_Model):
    """Splitting a straggling shard's remainder among idle workers (Dataflow's dynamic work rebalancing)."""

    enabled: bool = Field(
        default=False,
        description=(
            "When workers sit idle with nothing left to hand out, ask the worker of the running map shard "
            "with the most left to read to stop at its next record boundary and commit what it has read; "
            "the rest becomes new shards for the idle workers. Applies to text and jsonl input, without a "
            "reduce stage or a command processor; elsewhere it is off, and status.splitting says why."
        ),
    )
    min_remainder: str | None = Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        max_length=64,
        description=(
            "Default 8Mi. A shard is split only when at least twice this much is left to read, and into "
            "parts of at least this much."
        ),
    )

    @model_validator(mode="after")
    def _quantity(self) -> Splitting:
        if self.min_remainder is not None:
            try:
                byte_quantity(self.min_remainder)
            except ValueError as error:
                raise ValueError(f"spec.splitting.minRemainder: {error}") from None
        return self


class Checkpoint(_Model):
    """How often workers record their position: work lost to a crash is at most one interval."""

    interval_seconds: int = Field(default=30, ge=1, le=86400, description="Checkpoint at least this often.")
    interval_records: int | None = Field(
        default=None, ge=1, le=MAX_EXACT_INT, description="Also checkpoint after this many records."
    )


class PodTemplateMetadata(_Model):
    """Labels and annotations added to worker pods."""

    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels for worker pods.")
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Extra annotations for worker pods.",
        json_schema_extra=annotations_schema(),
    )

    @field_validator("annotations")
    @classmethod
    def _confined(cls, annotations: dict[str, str]) -> dict[str, str]:
        problems = annotation_violations(annotations)
        if problems:
            raise ValueError("; ".join(problems))
        return annotations


class PodTemplate(_Model):
    """Merged into each worker pod: volumes, sidecars, init containers and other pod fields."""

    metadata: PodTemplateMetadata | None = Field(
        default=None, description="Extra pod labels and annotations."
    )
    spec: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Pod spec fields merged into the worker pod. volumeMounts and envFrom apply to the worker "
            "container; containers are added as sidecars (one named `worker` is merged into the worker). "
            "Identity and privilege belong to the operator: serviceAccountName, "
            "automountServiceAccountToken, host namespaces, nodeName, privileged or root containers, added "
            "capabilities and volume kinds outside the restricted Pod Security Standard are refused."
        ),
        json_schema_extra=template_schema(),
    )

    @field_validator("spec")
    @classmethod
    def _no_privilege(cls, spec: dict[str, Any] | None) -> dict[str, Any] | None:
        problems = violations(spec)
        if problems:
            raise ValueError("; ".join(problems))
        return spec


REDUCIBLE = ("wordcount", "aggregate")
REDUCE_MESSAGE = (
    "spec.reduce needs a keyed processor: builtin wordcount (the default) or aggregate, or "
    "spec.reduce.function with a spec.processor.function mapper, or spec.reduce.sql with spec.processor.sql"
)


class Reduce(_Model):
    """A reduce stage after the map shards: the result is produced by R reducers, each holding 1/R of it
    (or, with sql and no partitions, by the job commit)."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "has(self.partitions) || has(self.sql)",
                "spec.reduce.partitions is required (only spec.reduce.sql can do without)",
            ),
            _rule(
                "!has(self.sql) || !has(self.function)",
                "spec.reduce: set function or sql, not both",
            ),
        )
    )

    partitions: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description=(
            "Reduce tasks (R). Map shards split their output by crc32(key) % R; reducer p merges partition p "
            "of every map shard and writes part-r-<p>. The result is the partitions concatenated in order, "
            "each sorted by key."
        ),
    )
    function: str | None = Field(
        default=None,
        pattern=FUNCTION_PATTERN,
        max_length=512,
        description=(
            "A user reducer, module:function, called as function(key, values) for every key; its return "
            "value (JSON-able) is the key's result. Requires spec.processor.function as the mapper, "
            "returning an iterable of (key, value) pairs per record. Output lines: <key as JSON> TAB <result "
            "as JSON>."
        ),
    )
    sql: str | None = Field(
        default=None,
        max_length=MAX_SQL_CHARS,
        description=(
            "One SELECT over the table partials (every row spec.processor.sql returned, on every batch of "
            "every shard) that merges them into the result, e.g. SELECT region, sum(s) AS s FROM partials "
            "GROUP BY region. Without partitions it runs once, in the job commit; with partitions each "
            "reducer runs it on its keys, so it must GROUP BY plain columns (the shuffle keys)."
        ),
    )

    @model_validator(mode="after")
    def _partitions_or_sql(self) -> Reduce:
        if self.partitions is None and self.sql is None:
            raise ValueError("spec.reduce.partitions is required (only spec.reduce.sql can do without)")
        if self.sql is not None and self.function is not None:
            raise ValueError("spec.reduce: set function or sql, not both")
        return self


PROGRESS_DEADLINE_MESSAGE = (
    "spec.progressDeadlineSeconds must be 0 (off) or greater than spec.checkpoint.intervalSeconds: a healthy "
    "worker checkpoints only that often"
)


CONTINUOUS_MESSAGE = "spec.continuous and spec.autoscaling need spec.mode Continuous"
RESUME_MESSAGE = (
    "spec.output.resume is for Batch jobs without spec.output.overwrite or spec.splitting.enabled: "
    "incremental and continuous jobs already continue from their batch log, overwrite would clear what "
    "resume continues, and split shards' ranges live only in the ledger"
)
MANAGED_BY_MESSAGE = "spec.managedBy is immutable"
MULTIKUEUE_RESUME_MESSAGE = (
    "spec.managedBy kueue.x-k8s.io/multikueue needs spec.output.resume (or an incremental or continuous "
    "job): each copy Kueue makes in a worker cluster has a new UID, so without it a copy dispatched again "
    "after a lost cluster or an eviction would be refused its own output (OutputInUse)"
)
OPERATOR_MANAGER = "datajob.dev/operator"  # spec.managedBy's value for this operator (also when unset)
MULTIKUEUE_MANAGER = "kueue.x-k8s.io/multikueue"  # a MultiKueue manager cluster's copy (cluster.queueing)
INCREMENTAL_OVERWRITE_MESSAGE = (
    "spec.output.overwrite cannot be set with spec.input.incremental or spec.mode Continuous: every run "
    "would clear the batch log; to start afresh, delete the output or use another (locally: datajob run "
    "--overwrite)"
)
ACTIVE_DEADLINE_MESSAGE = "spec.activeDeadlineSeconds cannot be set with spec.mode Continuous (it never ends)"
AUTOSCALING_MIN_MESSAGE = "spec.minWorkers (Kueue's partial admission) cannot be set with spec.autoscaling"


class DataJobSpec(_Model):
    """What to process, how to split it, and the hardware and policies of the workers."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "!has(self.reduce) || (has(self.reduce.function) ? "
                "(has(self.processor) && has(self.processor.function)) : has(self.reduce.sql) ? "
                "(has(self.processor) && has(self.processor.sql)) : "
                "(!has(self.processor) || "
                "(has(self.processor.builtin) && self.processor.builtin in ['wordcount', 'aggregate'])))",
                REDUCE_MESSAGE,
                ".reduce",
            ),
            _rule(
                "!has(self.input.partitioning) || !has(self.input.partitioning.shards) "
                "|| self.workers <= self.input.partitioning.shards",
                "spec.workers must not exceed spec.input.partitioning.shards",
                ".workers",
            ),
            _rule(
                "!has(self.hardware) || (!has(self.resources.gpu) && !has(self.resources.ephemeralStorage) "
                "&& self.resources.cpu == '1' && self.resources.memory == '1Gi')",
                HARDWARE_MESSAGE,
                ".resources",
            ),
            _rule(
                "!has(self.hardware) || self.hardware.exists(p, !has(p.workers)) "
                "|| self.hardware.map(p, p.workers).sum() >= self.workers",
                CAPS_MESSAGE,
                ".hardware",
            ),
            _rule(
                "(!has(self.continuous) && !has(self.autoscaling)) || "
                "(has(self.mode) && self.mode == 'Continuous')",
                CONTINUOUS_MESSAGE,
                ".mode",
            ),
            _rule(
                "!has(self.output.overwrite) || !self.output.overwrite || "
                "((!has(self.input.incremental) || !self.input.incremental) && "
                "(!has(self.mode) || self.mode != 'Continuous'))",
                INCREMENTAL_OVERWRITE_MESSAGE,
                ".output.overwrite",
            ),
            _rule(
                "!has(self.output.resume) || !self.output.resume || "
                "((!has(self.input.incremental) || !self.input.incremental) && "
                "(!has(self.mode) || self.mode != 'Continuous') && "
                "(!has(self.output.overwrite) || !self.output.overwrite) && "
                "(!has(self.splitting) || !has(self.splitting.enabled) || !self.splitting.enabled))",
                RESUME_MESSAGE,
                ".output.resume",
            ),
            _rule(
                "!has(self.managedBy) || self.managedBy != 'kueue.x-k8s.io/multikueue' || "
                "(has(self.output.resume) && self.output.resume) || "
                "(has(self.input.incremental) && self.input.incremental) || "
                "(has(self.mode) && self.mode == 'Continuous')",
                MULTIKUEUE_RESUME_MESSAGE,
                ".managedBy",
            ),
            _rule(
                "has(self.managedBy) == has(oldSelf.managedBy)",
                MANAGED_BY_MESSAGE,
                ".managedBy",
            ),
            _rule(
                "!has(self.mode) || self.mode != 'Continuous' || !has(self.activeDeadlineSeconds)",
                ACTIVE_DEADLINE_MESSAGE,
                ".activeDeadlineSeconds",
            ),
            _rule(
                "!has(self.autoscaling) || !has(self.minWorkers)",
                AUTOSCALING_MIN_MESSAGE,
                ".autoscaling",
            ),
            _rule(
                "!has(self.minWorkers) || self.minWorkers <= self.workers",
                "spec.minWorkers must not exceed spec.workers",
                ".minWorkers",
            ),
            _rule(
                "!has(self.progressDeadlineSeconds) || self.progressDeadlineSeconds == 0 "
                "|| !has(self.checkpoint) || !has(self.checkpoint.intervalSeconds) "
                "|| self.progressDeadlineSeconds > self.checkpoint.intervalSeconds",
                PROGRESS_DEADLINE_MESSAGE,
                ".progressDeadlineSeconds",
            ),
        )
    )

    image: str = Field(min_length=1, max_length=1024, description="Worker container image.")
    managed_by: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-zA-Z0-9]([-a-zA-Z0-9._]*[a-zA-Z0-9])?$",
        description=(
            "Which controller runs this DataJob, as batch/v1 Job's managedBy: unset or "
            f"{OPERATOR_MANAGER}, this operator. kueue.x-k8s.io/multikueue: the copy on a MultiKueue manager "
            "cluster, for which this operator only makes its Kueue Workload (Kueue runs the job in a worker "
            "cluster and mirrors its status here). Any other value: this operator leaves the DataJob alone "
            "(no pods, no status). Immutable; set it at creation."
        ),
        json_schema_extra=_rules(_rule("self == oldSelf", MANAGED_BY_MESSAGE)),
    )
    command: list[str] | None = Field(
        default=None, max_length=256, description="Worker entrypoint; default: python -m datajob_worker."
    )
    args: list[str] | None = Field(default=None, max_length=256, description="Arguments to the entrypoint.")
    env: list[EnvVar] | None = Field(default=None, max_length=256, description="Extra environment variables.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="Image pull policy of the worker container."
    )
    input: Input = Field(
        description="The input to process. Immutable.",
        json_schema_extra=_rules(_rule("self == oldSelf", "spec.input is immutable")),
    )
    output: Output = Field(
        description="Where results are committed. Immutable.",
        json_schema_extra=_rules(_rule("self == oldSelf", "spec.output is immutable")),
    )
    storage: Storage | None = Field(
        default=None, description="Object-store endpoint and credentials for s3:// input and output."
    )
    reduce: Reduce | None = Field(
        default=None,
        description="An optional reduce stage (map -> shuffle by key -> reduce). Immutable.",
        json_schema_extra=_rules(_rule("self == oldSelf", "spec.reduce is immutable")),
    )
    processor: Processor | None = Field(
        default=None,
        description="What to do with each record; if unset the worker command does everything. Immutable.",
        json_schema_extra=_rules(_rule("self == oldSelf", "spec.processor is immutable")),
    )
    mode: Literal["Batch", "Continuous"] = Field(
        default="Batch",
        description=(
            "Batch: plan the input once, process it, finish. Continuous: keep running; list the input every "
            "continuous.pollSeconds, and process new objects in batches, each committed atomically (a batch "
            "log entry and an updated result), exactly once per object. Immutable."
        ),
        json_schema_extra=_rules(_rule("self == oldSelf", "spec.mode is immutable")),
    )
    continuous: Continuous | None = Field(
        default=None, description="Polling and batch size of a continuous job (spec.mode Continuous)."
    )
    autoscaling: Autoscaling | None = Field(
        default=None,
        description=(
            "Continuous jobs: size the workers by the backlog between minWorkers (0 allowed) and maxWorkers, "
            "instead of spec.workers. Scale-down stops workers gracefully (their checkpoints are kept)."
        ),
    )
    workers: int = Field(
        default=1, ge=1, le=10000, description="Parallelism: worker pods. Can be changed while the job runs."
    )
    min_workers: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description=(
            "Under Kueue (label kueue.x-k8s.io/queue-name): the fewest workers the job may be admitted with "
            "when the queue has no room for spec.workers (Kueue's partial admission). Unset: all or none."
        ),
    )
    resources: Resources = Field(
        default_factory=Resources,
        description="Hardware per worker: the one-profile shorthand of spec.hardware (not set with it).",
    )
    hardware: list[HardwareProfile] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PROFILES,
        description=(
            "Hardware profiles in order of preference: workers go to the first profile that schedules, "
            "the next once a profile's workers stay unschedulable past its waitSeconds, and profiles with "
            "a workers cap make a mixed fleet. spec.nodeSelector, tolerations and affinity apply to all."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    speculation: Speculation | None = Field(
        default=None,
        description=(
            "Speculative attempts: when idle workers remain and a running map shard reads well below its "
            "peers' rate, a backup attempt starts on an idle worker from the shard's latest checkpoint. The "
            "first to commit wins (the exclusive commit record decides); the other is told to stop and is "
            "never charged. See docs/design.md, 'Speculation'."
        ),
    )
    splitting: Splitting | None = Field(
        default=None,
        description=(
            "Splitting a straggler's remainder: near the end of a job, a running shard with much left to "
            "read stops at a record boundary and the rest is split among idle workers. Exactly-once holds: "
            "the stopped attempt's commit record says where it stopped. See docs/design.md, 'Splitting a "
            "straggler's remainder'."
        ),
    )
    hardware_move_up_seconds: int | None = Field(
        default=None,
        ge=10,
        le=86400,
        description=(
            "Moving back up to better hardware (off when unset): this long after a profile was given up on, "
            "it is tried again. New workers try it first, and one running worker of a lower profile stops "
            "after checkpointing (nothing is charged) so its replacement asks for the better hardware; if "
            "that is still full, the replacement falls back again after the profile's waitSeconds."
        ),
    )
    node_selector: dict[str, str] | None = Field(default=None, description="Node labels worker pods require.")
    tolerations: list[Toleration] | None = Field(
        default=None,
        max_length=64,
        description="Tolerations for worker pods (GPU taints are tolerated already).",
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Kubernetes affinity for worker pods.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    priority_class_name: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="PriorityClass of worker pods.",
    )
    pod_template: PodTemplate | None = Field(default=None, description="Overrides merged into worker pods.")
    retry_policy: RetryPolicy = Field(
        default_factory=RetryPolicy, description="Retries and failure tolerance."
    )
    checkpoint: Checkpoint = Field(default_factory=Checkpoint, description="Checkpoint frequency.")
    suspend: bool = Field(default=False, description="Stop the workers, keeping all progress; false resumes.")
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        le=2**31 - 1,
        description="Delete the DataJob this long after it succeeded or failed (as a Job's, at most 2^31-1).",
    )
    startup_timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=86400,
        description=(
            "How long a scheduled worker may fail to start (ImagePullBackOff, CreateContainerConfigError, "
            "...). Past it the worker is replaced if others run, and the job fails with that reason if none "
            "does. Pods waiting for a node (Unschedulable) are not timed out."
        ),
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=31536000,
        description=(
            "The longest the job may be active before it fails with reason DeadlineExceeded (its workers "
            "stop, committed output is kept). Unlike a Job's, time suspended (spec.suspend) or queued "
            "(waiting for Kueue's admission, or evicted by it) does not count; time with workers pending "
            "does. Unset: no limit."
        ),
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=0,
        le=31536000,
        description=(
            "Like a Deployment's: if no shard completes and no checkpoint advances for this long while the "
            "job runs, the job is Stalled (a condition naming the likely cause, and an event). Must exceed "
            "checkpoint.intervalSeconds. 0 turns stall detection off."
        ),
    )
    progress_deadline_action: Literal["Report", "Fail"] = Field(
        default="Report",
        description=(
            "What a stall does: Report (condition and event; the job keeps going) or Fail (the job fails "
            "with reason ProgressDeadlineExceeded)."
        ),
    )

    @model_validator(mode="after")
    def _one_hardware_form(self) -> DataJobSpec:
        if self.hardware is not None and self.resources != Resources():
            raise ValueError(HARDWARE_MESSAGE)
        names = [p.name for p in self.hardware or []]
        if len(set(names)) != len(names):
            raise ValueError("spec.hardware: profile names must be unique")
        template = (self.pod_template.spec if self.pod_template else None) or {}
        worker = [
            c for c in template.get("containers") or [] if isinstance(c, dict) and c.get("name") == "worker"
        ]
        if self.hardware is not None and any("resources" in c for c in worker):
            raise ValueError(
                "spec.podTemplate.spec.containers[worker].resources cannot be set with spec.hardware: each "
                "hardware profile has its own resources"
            )
        caps = [p.workers for p in self.hardware or []]
        if caps and None not in caps and sum(c or 0 for c in caps) < self.workers:
            raise ValueError(CAPS_MESSAGE)
        return self

    @model_validator(mode="after")
    def _continuous_fields(self) -> DataJobSpec:
        if self.mode != "Continuous" and (self.continuous is not None or self.autoscaling is not None):
            raise ValueError(CONTINUOUS_MESSAGE)
        if self.incremental and self.output.overwrite:
            raise ValueError(INCREMENTAL_OVERWRITE_MESSAGE)
        splitting = self.splitting is not None and self.splitting.enabled
        if self.output.resume and (self.incremental or self.output.overwrite or splitting):
            raise ValueError(RESUME_MESSAGE)
        if self.managed_by == MULTIKUEUE_MANAGER and not (self.output.resume or self.incremental):
            raise ValueError(MULTIKUEUE_RESUME_MESSAGE)
        if self.mode == "Continuous" and self.active_deadline_seconds is not None:
            raise ValueError(ACTIVE_DEADLINE_MESSAGE)
        if self.autoscaling is not None and self.min_workers is not None:
            raise ValueError(AUTOSCALING_MIN_MESSAGE)
        caps = [p.workers for p in self.hardware or []]
        capped = sum(c for c in caps if c is not None) if caps and None not in caps else None
        if self.autoscaling is not None and capped is not None and capped < self.autoscaling.max_workers:
            raise ValueError("spec.autoscaling.maxWorkers exceeds the workers the hardware profiles allow")
        return self

    @property
    def incremental(self) -> bool:
        """Whether runs take only input no earlier run took (spec.input.incremental, or Continuous)."""
        return self.input.incremental or self.mode == "Continuous"

    @model_validator(mode="after")
    def _min_workers_fit(self) -> DataJobSpec:
        if self.min_workers is not None and self.min_workers > self.workers:
            raise ValueError("spec.minWorkers must not exceed spec.workers")
        return self

    @model_validator(mode="after")
    def _deadline_exceeds_checkpoints(self) -> DataJobSpec:
        deadline = self.progress_deadline_seconds
        if deadline and deadline <= self.checkpoint.interval_seconds:
            raise ValueError(PROGRESS_DEADLINE_MESSAGE)
        return self

    @model_validator(mode="after")
    def _output_outside_input(self) -> DataJobSpec:
        inside = output_inside_input(self.input.uris, self.output.uri)
        if inside is not None:
            raise ValueError(
                f"spec.output.uri {self.output.uri} is inside the input set ({inside}): the job would read "
                "its own output; write it elsewhere or narrow spec.input.uris"
            )
        return self

    @model_validator(mode="after")
    def _reducible(self) -> DataJobSpec:
        if self.reduce is None:
            return self
        if self.reduce.function is not None:
            ok = self.processor is not None and self.processor.function is not None
        elif self.reduce.sql is not None:
            ok = self.processor is not None and self.processor.sql is not None
        else:
            ok = self.processor is None or self.processor.builtin in REDUCIBLE
        if not ok:
            raise ValueError(REDUCE_MESSAGE)
        return self

    @model_validator(mode="after")
    def _sql_runs_per_shard(self) -> DataJobSpec:
        # CEL cannot parse SQL; the operator (before any pod starts) and datajob validate / run do.
        sql = self.processor.sql if self.processor is not None else None
        if sql is not None:
            reduce_sql = self.reduce.sql if self.reduce is not None else None
            sql_check.check_map(sql, has_reduce=reduce_sql is not None)
            if reduce_sql is not None and self.reduce is not None:
                sql_check.check_reduce(reduce_sql, partitions=self.reduce.partitions or 0)
        return self

    @model_validator(mode="after")
    def _workers_fit(self) -> DataJobSpec:
        shards = self.input.partitioning.shards
        if shards is not None and self.workers > shards:
            raise ValueError(
                f"spec.workers must not exceed spec.input.partitioning.shards ({self.workers} > {shards})"
            )
        return self


class Condition(_Model):
    """A standard Kubernetes condition."""

    type: str = Field(
        max_length=316,
        description="Progressing, Stalled, Succeeded, Failed, Suspended, WorkersUnschedulable, ...",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str | None = Field(default=None, max_length=1024, description="Machine-readable reason.")
    message: str | None = Field(default=None, max_length=32768, description="Human-readable detail.")
    last_transition_time: str | None = Field(
        default=None, description="When status last changed.", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(default=None, description="Generation the condition is about.")


class ShardCounts(_Model):
    """Shards by state."""

    total: int | None = Field(default=None, description="All shards.")
    pending: int | None = Field(default=None, description="Waiting for a worker.")
    running: int | None = Field(default=None, description="Assigned to a worker.")
    succeeded: int | None = Field(default=None, description="Committed.")
    failed: int | None = Field(default=None, description="Out of attempts.")
    summary: str | None = Field(default=None, description="done/total, for kubectl get.")


class WorkerSummary(_Model):
    """Worker pods."""

    desired: int | None = Field(default=None, description="Worker pods wanted now.")
    active: int | None = Field(default=None, description="Pods pending or running.")
    ready: int | None = Field(default=None, description="Pods running.")
    summary: str | None = Field(default=None, description="ready/desired, for kubectl get.")
    selector: str | None = Field(default=None, description="Label selector of the worker pods.")


class ProcessedCounts(_Model):
    """Input consumed by committed shards (each shard counted once, whatever its attempts)."""

    records: int | None = Field(default=None, description="Records read.")
    bytes: int | None = Field(default=None, description="Bytes read.")
    skipped_records: int | None = Field(
        default=None, description="Malformed records dropped under badRecordPolicy Skip or DeadLetter."
    )


class OutputStatus(_Model):
    """What the job commit published (set when the job succeeded)."""

    uri: str | None = Field(default=None, description="spec.output.uri.")
    result: str | None = Field(default=None, description="The merged result of all shards.")
    manifest: str | None = Field(
        default=None,
        description="_SUCCESS: every shard's attempt, object, size, checksum and record count.",
    )
    commit: Literal["Pending", "Running", "Succeeded", "Failed"] | None = Field(
        default=None, description="State of the job commit, which runs after the last shard."
    )


class BatchesStatus(_Model):
    """An incremental or continuous job's batches and backlog."""

    current: int | None = Field(default=None, description="The batch running now (or last run).")
    committed: int | None = Field(default=None, description="Batches committed so far.")
    last_committed_time: str | None = Field(
        default=None,
        description="When the newest batch committed.",
        json_schema_extra={"format": "date-time"},
    )
    pending_objects: int | None = Field(
        default=None, description="Input objects not in a committed batch yet (the running batch's included)."
    )
    pending_bytes: int | None = Field(default=None, description="Their bytes.")
    lag_seconds: float | None = Field(
        default=None, description="Age of the oldest such object: how far the published result is behind."
    )
    lag: str | None = Field(
        default=None, description="lagSeconds for people (kubectl get dj): 0s, 42s, 3m10s."
    )
    batches_per_minute: float | None = Field(default=None, description="Over the last ten minutes.")
    records: int | None = Field(
        default=None,
        description="Records in all committed batches (status.processed counts the current one).",
    )


class ProgressStatus(_Model):
    """How far the job is and how fast it goes, as of the last change in the durable ledger."""

    records: int | None = Field(
        default=None, description="Input records consumed (committed + checkpointed)."
    )
    bytes: int | None = Field(default=None, description="Input bytes consumed (committed + checkpointed).")
    total_bytes: int | None = Field(default=None, description="The input's size in bytes.")
    percent: int | None = Field(
        default=None, description="Input consumed, in percent; 100 only once the job has succeeded."
    )
    summary: str | None = Field(default=None, description="percent, for kubectl get.")
    records_per_second: int | None = Field(default=None, description="Throughput over about the last minute.")
    bytes_per_second: int | None = Field(default=None, description="Throughput over about the last minute.")
    eta: str | None = Field(default=None, description="Time left at that rate (e.g. 3m20s), for kubectl get.")
    estimated_completion_time: str | None = Field(
        default=None,
        description="When the input will be consumed at that rate.",
        json_schema_extra={"format": "date-time"},
    )


class ProfileStatus(_Model):
    """One hardware profile's workers and what they did."""

    name: str | None = Field(default=None, description="spec.hardware[].name (default: spec.resources).")
    active: int | None = Field(default=None, description="Its worker pods, pending or running.")
    ready: int | None = Field(default=None, description="Its worker pods running.")
    records: int | None = Field(default=None, description="Records of the shards its workers committed.")
    shards: int | None = Field(default=None, description="Shards its workers committed.")
    records_per_second: int | None = Field(
        default=None, description="Records per second of one of its workers, while busy."
    )
    given_up: str | None = Field(
        default=None,
        description="Why new workers no longer go to it: the scheduler's message past waitSeconds.",
    )


class WorkerHardware(_Model):
    """One live worker: where it runs and how fast."""

    slot: int | None = Field(default=None, description="The worker slot.")
    pod: str | None = Field(default=None, description="The worker pod.")
    profile: str | None = Field(default=None, description="Its hardware profile.")
    node: str | None = Field(default=None, description="The node it runs on.")
    devices: list[str] | None = Field(
        default=None, description="Devices allocated to it by DRA, as driver/pool/device."
    )
    records: int | None = Field(default=None, description="Records of the shards it committed.")
    records_per_second: int | None = Field(default=None, description="Its records per second, while busy.")


class HardwareStatus(_Model):
    """Which hardware the workers run on (see spec.hardware)."""

    profiles: list[ProfileStatus] | None = Field(default=None, description="Per profile, in spec order.")
    workers: list[WorkerHardware] | None = Field(
        default=None, description="Live workers (at most 64): profile, node, devices, records/s."
    )
    summary: str | None = Field(default=None, description="Workers per profile (h100:4 a100:2), for -o wide.")


class SpeculatedShard(_Model):
    shard: int = Field(description="The map shard.")
    winner: Literal["backup", "original"] = Field(description="Which attempt committed first.")


class SpeculationStatus(_Model):
    """Backup attempts (spec.speculation) over the run."""

    launched: int | None = Field(default=None, description="Backup attempts started.")
    won: int | None = Field(default=None, description="Backups that committed before the original.")
    wasted: int | None = Field(
        default=None, description="Backups that lost to the original (their work was discarded)."
    )
    running: int | None = Field(default=None, description="Backup attempts running now.")
    shards: list[SpeculatedShard] | None = Field(
        default=None, description="The last 20 speculated shards that finished, and which attempt won."
    )


class SplittingStatus(_Model):
    """Shards split (spec.splitting) over the run."""

    shards: int | None = Field(default=None, description="Running shards whose remainder was split off.")
    made: int | None = Field(default=None, description="New shards made from those remainders.")
    requested: int | None = Field(default=None, description="Workers asked to stop for a split right now.")
    off: str | None = Field(default=None, description="Why spec.splitting.enabled has no effect on this job.")


class QueueStatus(_Model):
    """Where a job labelled kueue.x-k8s.io/queue-name stands in Kueue."""

    name: str | None = Field(default=None, description="The LocalQueue (the label's value).")
    workload: str | None = Field(default=None, description="The Kueue Workload that represents the job.")
    cluster_queue: str | None = Field(default=None, description="The ClusterQueue that admitted it.")
    position: int | None = Field(
        default=None,
        description=(
            "While waiting: its place among the waiting Workloads of its LocalQueue, by priority then age "
            "(StrictFIFO order; 1 is next)."
        ),
    )
    admitted_workers: int | None = Field(
        default=None, description="Workers Kueue admitted (fewer than spec.workers after partial admission)."
    )


class DataJobStatus(_Model):
    """Observed state, written by the operator."""

    model_config = ConfigDict(extra="allow")

    observed_generation: int | None = Field(default=None, description="Generation of the spec last acted on.")
    phase: Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"] | None = Field(
        default=None, description="Pending, Running, Suspended, Succeeded or Failed."
    )
    message: str | None = Field(default=None, description="Why the job is in its phase.")
    conditions: list[Condition] | None = Field(
        default=None,
        description=(
            "Progressing, Stalled, Succeeded, Failed, Suspended, WorkersUnschedulable, WorkersBlocked and "
            "ReconcileFailing."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    shards: ShardCounts | None = Field(default=None, description="Shards by state.")
    reduce: ShardCounts | None = Field(default=None, description="Reduce tasks by state (with spec.reduce).")
    workers: WorkerSummary | None = Field(default=None, description="Worker pods.")
    restarts: int | None = Field(
        default=None, description="Worker pods replaced, for any reason but the job's own scale-down."
    )
    disruptions: int | None = Field(
        default=None,
        description="Of those, pods taken away (eviction, preemption, drain, node loss): charged to nobody.",
    )
    processed: ProcessedCounts | None = Field(default=None, description="Input consumed by committed shards.")
    progress: ProgressStatus | None = Field(default=None, description="Percent done, throughput and ETA.")
    queue: QueueStatus | None = Field(default=None, description="Kueue: the queue, Workload and position.")
    hardware: HardwareStatus | None = Field(
        default=None, description="Workers per hardware profile, and where each live worker runs."
    )
    splitting: SplittingStatus | None = Field(
        default=None, description="Remainders of straggling shards split off (with spec.splitting)."
    )
    speculation: SpeculationStatus | None = Field(
        default=None, description="Backup attempts of straggling shards (with spec.speculation)."
    )
    output: OutputStatus | None = Field(default=None, description="The job commit and what it published.")
    batches: BatchesStatus | None = Field(
        default=None, description="Incremental and continuous jobs: batches, backlog and lag."
    )
    start_time: str | None = Field(
        default=None, description="When the job started.", json_schema_extra={"format": "date-time"}
    )
    completion_time: str | None = Field(
        default=None, description="When the job finished.", json_schema_extra={"format": "date-time"}
    )
    ledger: dict[str, Any] | None = Field(
        default=None,
        description="The operator's durable shard ledger (internal; do not edit).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class DataJob(_Model):
    """A fault-tolerant, hardware-sized data-processing job."""

    api_version: Literal["datajob.dev/v1alpha1"] = Field(
        default="datajob.dev/v1alpha1", alias="apiVersion", description="datajob.dev/v1alpha1"
    )
    kind: Literal["DataJob"] = Field(default="DataJob", description="DataJob")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: DataJobSpec = Field(description="What to process and how.")
    status: DataJobStatus | None = Field(default=None, description="Observed state, written by the operator.")

    @model_validator(mode="after")
    def _name(self) -> DataJob:
        name = self.metadata.get("name")
        if name is None:
            return self
        if not isinstance(name, str) or not re.fullmatch(DNS_SUBDOMAIN_PATTERN, name) or len(name) > 253:
            raise ValueError(f"metadata.name {name!r} must be a lowercase DNS name (a-z, 0-9, '-', '.')")
        if len(name) > MAX_NAME:
            raise ValueError(NAME_MESSAGE)
        return self

    @classmethod
    def load(cls, manifest: dict[str, Any]) -> DataJob:
        """Validates a manifest; raises ValueError with every problem named by its field path."""
        try:
            return cls.model_validate(manifest)
        except ValidationError as error:
            raise ValueError(format_validation_error(error)) from None


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, with the field path as the API server writes it (``spec.input.uris``)."""
    lines = []
    for problem in error.errors():
        path = ""
        for part in problem["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif not str(part).startswith("function-after"):
                path += f".{part}" if path else str(part)
        message = str(problem["msg"]).removeprefix("Value error, ")
        named = not path or message.startswith(("spec.", "metadata."))
        lines.append(message if named else f"{path}: {message}")
    return "\n".join(lines)


def normalised_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec as the models read it, defaults applied: one form however it was written (an omitted
    ``options: {}`` or an explicit one), for identities computed from it (increments.identity)."""
    return DataJobSpec.model_validate(spec).model_dump(by_alias=True, exclude_none=True)
