"""The catalog's public export: JSON, CSV, or Asset Administration Shells (one shell per
device, its tags as a submodel; Eclipse BaSyx, the ``brain`` extra). Restricted tags
are never in it."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from brain_reader.catalog import Catalog

COLUMNS = ("contract", "plant", "line", "gateway", "device", "registration_id", "tag", "unit",
           "type", "description", "classification", "grade", "writable", "first_seen",
           "last_seen", "present")  # fmt: skip
FORMATS = ("json", "csv", "aas")


def export(catalog: Catalog, fmt: str) -> str:
    tags = list(catalog.tags(public=True))
    if fmt == "json":
        return json.dumps({"tags": [{c: t[c] for c in COLUMNS} for t in tags]}, indent=1,
                          ensure_ascii=False)  # fmt: skip
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for tag in tags:
            writer.writerow({c: _csv_cell(tag[c]) for c in COLUMNS})
        return out.getvalue()
    if fmt == "aas":
        return aas_json(tags)
    raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")


def _csv_cell(value: Any) -> Any:
    """No cell starts a formula in a spreadsheet (=, +, -, @): a tag description comes
    from the plant floor."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _id_short(text: str) -> str:
    """An AAS idShort: a letter, then letters, digits, '_' (other characters become '_')."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return cleaned if cleaned[:1].isalpha() else f"x{cleaned}"


def aas_json(tags: list[dict[str, Any]]) -> str:
    """One AssetAdministrationShell per device (its id: the registration identifier when
    there is one), with a submodel ``Tags``: one collection per tag (unit, type,
    classification, grade, description)."""
    from basyx.aas import model
    from basyx.aas.adapter.json import write_aas_json_file

    store: model.DictIdentifiableStore[model.Identifiable] = model.DictIdentifiableStore()
    devices: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for tag in tags:
        devices.setdefault((tag["gateway"], tag["device"]), []).append(tag)
    for (gateway, device), device_tags in sorted(devices.items()):
        registration = device_tags[0]["registration_id"]
        base = f"urn:chenxing:{gateway}:{device}".replace(" ", "%20")
        elements = []
        for tag in device_tags:
            values = [model.Property(_id_short(k), model.datatypes.String, str(tag[k] or ""))
                      for k in ("unit", "type", "classification", "grade", "description")]
            elements.append(model.SubmodelElementCollection(_id_short(tag["tag"]), values))
        submodel = model.Submodel(f"{base}:tags", elements, id_short="Tags")
        specific: tuple[model.SpecificAssetId, ...] = ()
        if registration:
            specific = (model.SpecificAssetId("registrationId", registration),)
        shell = model.AssetAdministrationShell(
            model.AssetInformation(model.AssetKind.INSTANCE, global_asset_id=registration or base,
                                   specific_asset_id=specific),
            id_=registration or base, id_short=_id_short(f"{gateway}_{device}"),
            submodel={model.ModelReference.from_referable(submodel)},
        )  # fmt: skip
        store.add(submodel)
        store.add(shell)
    out = io.StringIO()
    write_aas_json_file(out, store)
    return out.getvalue()
