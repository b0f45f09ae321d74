import torch

from sigmoidf1.losses import SigmoidF1Loss
from sigmoidf1.metrics import confusion_counts
from sigmoidf1.thresholds import tune_thresholds

torch.manual_seed(0)  # a toy problem: 20 features, 8 labels that depend on them, with noise
x = torch.randn(3000, 20)
y = (x @ torch.randn(20, 8) + torch.randn(3000, 8) > 2.5).float()  # multi-hot [3000, 8]
train, val, test = torch.arange(3000).split([2000, 500, 500])

model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
loss_fn = SigmoidF1Loss()  # the paper's loss; it takes logits [batch, labels]
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
for _ in range(20):  # epochs
    for batch in train[torch.randperm(len(train))].split(256):
        loss = loss_fn(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

with torch.no_grad():  # per-label thresholds from the validation split, safe for rare labels
    thresholds = tune_thresholds(model(x[val]), y[val]).thresholds
    counts = confusion_counts(torch.sigmoid(model(x[test])) >= thresholds, y[test])
print(f"test micro-F1 {counts.pooled().f1:.3f}, macro-F1 {counts.f1.mean():.3f}")
