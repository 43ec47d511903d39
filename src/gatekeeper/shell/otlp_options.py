"""Flags (and GATEKEEPER_OTLP_* variables) that say where OTLP spans' region, tier, version and client region
come from, shared by ``gatekeeper replay`` and ``gatekeeper worker``."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from gatekeeper.errors import UserError

if TYPE_CHECKING:  # the CLI builds every parser at start: the protobuf classes load only when used
    from gatekeeper.core.otlp_mapping import OtlpMapping

INPUT_FORMATS = ("json", "otlp-json", "otlp-proto")

_FLAGS = {  # dest -> environment variable
    "otlp_region_attribute": "GATEKEEPER_OTLP_REGION_ATTRIBUTE",
    "otlp_tier_attribute": "GATEKEEPER_OTLP_TIER_ATTRIBUTE",
    "otlp_region_map": "GATEKEEPER_OTLP_REGION_MAP",
    "otlp_tier_map": "GATEKEEPER_OTLP_TIER_MAP",
    "otlp_version_attribute": "GATEKEEPER_OTLP_VERSION_ATTRIBUTE",
    "otlp_version_map": "GATEKEEPER_OTLP_VERSION_MAP",
    "otlp_client_region_attribute": "GATEKEEPER_OTLP_CLIENT_REGION_ATTRIBUTE",
}


def add_otlp_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("OpenTelemetry spans (OTLP input)")
    group.add_argument("--otlp-region-attribute", help="resource attribute naming the region (default cloud.region)")
    group.add_argument("--otlp-tier-attribute", help="resource attribute naming the tier (default rollout.tier)")
    group.add_argument(
        "--otlp-region-map", help="attribute values to plan regions, e.g. us-east-1=us-east,eu-west-1=eu-west"
    )
    group.add_argument("--otlp-tier-map", help="attribute values to plan tiers, e.g. 2.4.0-canary=canary")
    group.add_argument(
        "--otlp-version-attribute",
        help="resource attribute naming the version, compared with no_regression's baseline_version "
        "(default service.version)",
    )
    group.add_argument(
        "--otlp-version-map",
        help="version attribute values to telemetry versions, e.g. 2.3.0+build.7=2.3.0 (others as they are)",
    )
    group.add_argument(
        "--otlp-client-region-attribute",
        help="span (else resource) attribute naming the client's region, for cross-region latency; values "
        "translated by --otlp-region-map (default: none, no span is cross-region)",
    )


def parse_map(text: str, flag: str) -> dict[str, str]:
    """``a=b,c=d`` as a dict; a UserError naming the flag and the bad item otherwise."""
    out: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise UserError(f"{flag}: {item!r} is not VALUE=NAME (e.g. us-east-1=us-east)")
        out[source.strip()] = target.strip()
    return out


def otlp_mapping(args: argparse.Namespace, environ: dict[str, str] | None = None) -> OtlpMapping:
    """The mapping from flags, then GATEKEEPER_OTLP_* variables, then the defaults."""
    from gatekeeper.core.otlp_mapping import OtlpMapping

    env = dict(os.environ if environ is None else environ)
    values = {name: getattr(args, name, None) or env.get(var) or None for name, var in _FLAGS.items()}
    base = OtlpMapping()
    return OtlpMapping(
        region_attribute=values["otlp_region_attribute"] or base.region_attribute,
        tier_attribute=values["otlp_tier_attribute"] or base.tier_attribute,
        regions=parse_map(values["otlp_region_map"] or "", "--otlp-region-map"),
        tiers=parse_map(values["otlp_tier_map"] or "", "--otlp-tier-map"),
        version_attribute=values["otlp_version_attribute"] or base.version_attribute,
        versions=parse_map(values["otlp_version_map"] or "", "--otlp-version-map"),
        client_region_attribute=values["otlp_client_region_attribute"] or None,
    )
