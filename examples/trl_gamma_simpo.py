"""γ-SimPO in TRL with gammapo's trainer: a runnable example (CPU, about half a minute).

    pip install -e ".[trl]"
    python examples/trl_gamma_simpo.py                       # tiny model + embedded task
    python examples/trl_gamma_simpo.py --model ./my-model --dataset prefs.jsonl

`GammaPOTrainer` is TRL's `DPOTrainer` with its loss taken from gammapo's registry: use it wherever
you use `DPOTrainer` (your datasets, PEFT config, accelerate/torchrun launch). The loss hyper-parameters
below are the released Llama-3-8B-Instruct recipe (β = 10, γ0/β = 0.4, τ = 10, queue calibration);
for the tiny model we use a smaller β and a large learning rate.
"""

import argparse

from datasets import Dataset
from trl import DPOConfig

from gammapo.integrations.trl import GammaPOTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a local causal LM folder (default: a tiny Llama built from a config)")
    parser.add_argument("--dataset", help="a prompt/chosen/rejected .jsonl file (default: the embedded task)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="gamma-simpo-example")
    args = parser.parse_args()

    if args.model:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from gammapo.train.data import load_preferences

        model, tokenizer = AutoModelForCausalLM.from_pretrained(args.model), AutoTokenizer.from_pretrained(args.model)
        pairs = load_preferences(args.dataset)
        loss_kwargs, lr = dict(beta=10.0, gamma_beta_ratio=0.4, tau=10.0), 1e-6  # released Llama-3 recipe
    else:
        import torch

        from gammapo.train.task import SyntheticTask

        torch.set_num_threads(1)  # a 2-layer, 64-wide model: more threads only contend on a busy CPU
        from gammapo.train.tiny import build_model, build_tokenizer

        task = SyntheticTask()
        tokenizer = build_tokenizer(task.words)
        model = build_model(len(tokenizer))
        pairs = task.pairs(1024, noise=0.2, seed=0)  # 20% of the labels flipped
        loss_kwargs, lr = dict(beta=2.0, gamma_beta_ratio=0.5, tau=1.0), 3e-3

    trainer = GammaPOTrainer(
        model,
        args=DPOConfig(args.out, max_steps=args.steps, per_device_train_batch_size=32, learning_rate=lr,
                       logging_steps=max(1, min(10, args.steps)), bf16=False, gradient_checkpointing=False, report_to="none",
                       save_steps=30, lr_scheduler_type="cosine", warmup_steps=0.1),
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        loss="gamma-simpo",
        loss_kwargs=loss_kwargs,
    )
    trainer.train()  # logs loss, rewards/*, logps/*, gamma/{mean,std,min,max}; checkpoints carry the γ-PO queue
    logged = [h for h in trainer.state.log_history if "loss" in h and "gamma/mean" in h]
    if not logged:  # --steps 0: nothing trained, nothing logged
        print("no training step logged")
        return
    last = logged[-1]
    print(f"last logged step: loss {last['loss']:.4f}, reward accuracy {last['rewards/accuracies']:.3f}, "
          f"γ mean {last['gamma/mean']:.3f} (γ0 = {loss_kwargs['beta'] * loss_kwargs['gamma_beta_ratio']:g}), "
          f"γ range [{last['gamma/min']:.3f}, {last['gamma/max']:.3f}]")


if __name__ == "__main__":
    main()
