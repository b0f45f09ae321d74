"""One LightningDataModule per dataset, plus the shared base classes.

| class                       | config                   | inputs                          |
|-----------------------------|--------------------------|---------------------------------|
| YeastDataModule             | data=yeast               | float [batch, 103]              |
| ReutersDataModule           | data=reuters             | {"input_ids", "attention_mask"} |
| CsvTextDataModule           | data=csv_text            | {"input_ids", "attention_mask"} |
| WordNetDataModule           | data=wordnet             | {"input_ids", "attention_mask"} |
| MultiFashionMNISTDataModule | data=multi_fashion_mnist | float [batch, 1, 56, 56]        |
| CocoDataModule              | data=coco                | float [batch, 3, size, size]    |
| VocDataModule               | data=voc                 | float [batch, 3, size, size]    |
| CsvImageDataModule          | data=csv_image           | float [batch, C, size, size]    |

Each value of an input dict is a LongTensor ``[batch, T]``; ``C`` is ``channels`` (1 or 3).

Targets are always float ``[batch, num_labels]`` in {0, 1} (WordNet stores them sparse and
densifies them per example).
"""

from sigmoidf1.data.base import MultilabelDataModule
from sigmoidf1.data.coco import CocoDataModule
from sigmoidf1.data.csv_image import CsvImageDataModule
from sigmoidf1.data.csv_text import CsvTextDataModule
from sigmoidf1.data.fashion_mnist import MultiFashionMNISTDataModule
from sigmoidf1.data.images import ImageDataModule
from sigmoidf1.data.reuters import ReutersDataModule
from sigmoidf1.data.text_base import TextDataModule
from sigmoidf1.data.voc import VocDataModule
from sigmoidf1.data.wordnet import WordNetDataModule
from sigmoidf1.data.yeast import YeastDataModule

__all__ = [
    "CocoDataModule",
    "CsvImageDataModule",
    "CsvTextDataModule",
    "ImageDataModule",
    "MultiFashionMNISTDataModule",
    "MultilabelDataModule",
    "ReutersDataModule",
    "TextDataModule",
    "VocDataModule",
    "WordNetDataModule",
    "YeastDataModule",
]
