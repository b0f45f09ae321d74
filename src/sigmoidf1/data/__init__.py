"""One LightningDataModule per dataset, plus the shared base class."""

from sigmoidf1.data.base import MultilabelDataModule
from sigmoidf1.data.yeast import YeastDataModule

__all__ = ["MultilabelDataModule", "YeastDataModule"]
