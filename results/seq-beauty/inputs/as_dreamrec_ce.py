"""Write a DreamRec checkpoint pretrained with ``state_ce_weight=1`` as the registered strong variant ``dreamrec-ce``
(the same class with that default; its rows are named ``dreamrec-ce*``), its reverse chain respaced to K steps.

The weights are unchanged. The session-13 strong start was pretrained by the probe script
(``../probes/pretrain_variants.py ... state_ce_weight=1.0``), which builds a ``dreamrec`` backbone.

    python results/seq-beauty/inputs/as_dreamrec_ce.py /work/runs/s13/sa/best.pt 10 /work/runs/s13/dreamrec-ce-k10.pt
"""
import sys

from refit_gym.diffusion import BACKBONES
from refit_gym.diffusion.checkpoint import load_backbone, save_backbone

src, k, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3]
adapter, meta = load_backbone(src)
if adapter.backbone_name != "dreamrec" or adapter.state_ce_weight != 1.0:
    raise SystemExit(f"{src}: field 'backbone' is {adapter.backbone_name!r} with state_ce_weight "
                     f"{adapter.state_ce_weight}; expected 'dreamrec' with 1.0")
strong = BACKBONES["dreamrec-ce"](**adapter.config())
for name, tensor in adapter.data_tensors().items():  # data-sized buffers first, then every weight
    setattr(strong, name, tensor.clone())
strong.load_state_dict(adapter.state_dict())
strong.set_inference_steps(k)
print(save_backbone(strong, dst, dict(meta, converted_from=str(src))), "inference_steps =",
      strong.schedule_cfg.inference_steps)
