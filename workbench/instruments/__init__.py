"""Self-report instruments administered to a model through the shared K-option scorer.

- :mod:`.items`: :class:`Instrument` / :class:`InstrumentItem` (keyed statements, traits, facets), the shipped
  IPIP-NEO-120/-300 (:func:`load_ipip_neo`), a user's statement file (:func:`load_instrument`).
- :mod:`.formats`: :class:`ResponseFormat` and the three built-in, semantically equivalent formats; forward and
  reversed option orders.
- :mod:`.selfreport`: :func:`administer` -> :class:`SelfReportResult` (trait scores with CIs),
  :func:`order_symmetry` and :func:`format_effect` (Gupta et al. 2023's two properties, corrected across traits).
- :mod:`.tasks`: The Personality Illusion's behavioural tasks scored with the shared scorers.
- :mod:`.illusion`: self-report vs behaviour across conditions, and the re-analysis of the paper's released runs.

Imports nothing heavy at import time (no model, no pandas, no matplotlib).
"""

from __future__ import annotations

from .formats import FORMATS, ORDERS, ResponseFormat, build_item, get_format
from .items import (
                    BIG_FIVE,
                    IPIP_ANCHORS,
                    IPIP_QUESTION,
                    YES_NO_QUESTION,
                    Instrument,
                    InstrumentError,
                    InstrumentItem,
                    first_person,
                    instrument_from_records,
                    load_instrument,
                    load_ipip_neo,
                    yes_no_records,
)
from .selfreport import (
                    DEFAULT_FORMATS,
                    FormatEffect,
                    OrderSymmetry,
                    SelfReportResult,
                    administer,
                    format_effect,
                    order_symmetry,
                    plot_format_effect,
                    plot_order_symmetry,
                    plot_trait_scores,
)

__all__ = [
    "Instrument", "InstrumentItem", "InstrumentError", "load_ipip_neo", "load_instrument", "instrument_from_records",
    "IPIP_ANCHORS", "IPIP_QUESTION", "BIG_FIVE", "YES_NO_QUESTION", "first_person", "yes_no_records",
    "ResponseFormat", "FORMATS", "ORDERS", "get_format", "build_item",
    "SelfReportResult", "administer", "OrderSymmetry", "order_symmetry", "FormatEffect", "format_effect",
    "plot_trait_scores", "plot_order_symmetry", "plot_format_effect", "DEFAULT_FORMATS",
]
