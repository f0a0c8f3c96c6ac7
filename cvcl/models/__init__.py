"""Networks: the V-Net (:mod:`cvcl.models.vnet`), its shape (:mod:`cvcl.models.config`),
checkpoints and the class arg-max.

Nothing is imported here: the settings read :mod:`cvcl.models.config` to declare ``model``, and
that must not load torch.
"""
