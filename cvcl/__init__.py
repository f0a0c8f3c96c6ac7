"""CVCL: semi-supervised 3D segmentation with prototype-guided voxel contrast.

The package is organised by lifecycle (after nnU-Net v2):

- ``cvcl.datasets``       the dataset registry: one folder per dataset (declaration, source, converter)
- ``cvcl.sources``        what the datasets' sources share: transfers, local copies, case lists
- ``cvcl.preprocessing``  what the datasets' converters share: checks, crops, normalisation, recipe
- ``cvcl.data``           splits, patch sampling, augmentation, batch samplers
- ``cvcl.models``         V-Net with feature taps and the projection head
- ``cvcl.losses``         supervised, consistency, prototype (PCL) and contrast (VCL) terms
- ``cvcl.training``       the mean-teacher trainer and the method registry
- ``cvcl.inference``      sliding-window prediction and NIfTI export
- ``cvcl.evaluation``     medpy-equivalent metrics and summaries
- ``cvcl.tracking``       MLflow logging shared by the train, infer and evaluate stages
- ``cvcl.commands``       the ``cvcl`` command: what users run outside the stages (``cvcl --help``)
"""

__version__ = "0.1.0"
