"""``gatekeeper.shell.otlp_options``: the version and client-region attributes from flags, then variables; the
client region stays off unless named."""

from __future__ import annotations

import argparse

from gatekeeper.shell.otlp_options import add_otlp_arguments, otlp_mapping


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_otlp_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_read_service_version_and_no_client_region() -> None:
    """Without flags or variables: version from ``service.version``, no client-region attribute."""
    mapping = otlp_mapping(parse(), {})

    assert ("service.version", None) == (mapping.version_attribute, mapping.client_region_attribute)


def test_flags_win_over_variables() -> None:
    """A flag beats its GATEKEEPER_OTLP_* variable; a variable alone is used."""
    env = {"GATEKEEPER_OTLP_VERSION_ATTRIBUTE": "app.version", "GATEKEEPER_OTLP_CLIENT_REGION_ATTRIBUTE": "geo.x"}

    mapping = otlp_mapping(parse("--otlp-client-region-attribute", "client.region"), env)

    assert ("app.version", "client.region") == (mapping.version_attribute, mapping.client_region_attribute)


def test_version_map_from_flag_or_variable() -> None:
    """``--otlp-version-map`` (else GATEKEEPER_OTLP_VERSION_MAP) maps version values as the region and tier maps
    do; none given: no version is translated."""
    env = {"GATEKEEPER_OTLP_VERSION_MAP": "2.3.0+b7=2.3.0"}

    flagged = otlp_mapping(parse("--otlp-version-map", "2.3.0-rc.1=2.3.0, 2.3.0+b9=2.3.0"), env)

    expected: tuple[dict[str, str], ...] = ({"2.3.0-rc.1": "2.3.0", "2.3.0+b9": "2.3.0"}, {"2.3.0+b7": "2.3.0"}, {})
    assert expected == (flagged.versions, otlp_mapping(parse(), env).versions, otlp_mapping(parse(), {}).versions)
