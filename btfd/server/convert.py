"""Moved to :mod:`btfd.convert` (the daemon and btfctl's local modes both use it); kept so that
the servicer's ``from .convert import ...`` goes on working until it imports from there."""

from ..convert import LINKAGE, core_record_to_pb, referenced_ids, type_to_pb

__all__ = ["type_to_pb", "core_record_to_pb", "referenced_ids", "LINKAGE"]
