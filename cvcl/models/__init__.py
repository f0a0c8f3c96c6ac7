"""Networks."""

from cvcl.models.vnet import VNet, VNetOutput

__all__ = ["VNet", "VNetOutput"]
