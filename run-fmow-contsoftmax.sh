#!/usr/bin/env bash
# CSP-MC-BLD on fMoW with the original run script's flags (the values its shell variables resolve to):
# pre-train a gridcell location encoder with contsoftmax for 300 epochs, then fine-tune it for 300 epochs on a
# 5 % stratified few-shot subset, with the image predictions of a classifier trained on the same 5 %; evaluate
# every 5 epochs. The load flags are T, so a killed run continues from its last checkpoints when started again.
# Data: $CSP_DATA_DIR/fmow/ (see main/paths.py). Output: ../model_dir/models_fmow/ (from main/).
# Extra arguments are passed on and win over the values below, e.g.
#   bash run-fmow-contsoftmax.sh --num_epochs_unsuper 1 --num_epochs 2 --eval_frequency 1 \
#       --device cpu --model_dir ../model_dir/try_fmow/    # a short trial run, in its own folder
#   SEEDS="0 1 2 3 4" bash run-fmow-contsoftmax.sh    # once per seed, each in seed{S}/ of the model
#       folder, then the mean ± std of the final Top-1s (main/seeds.py)
#   bash run-fmow-contsoftmax.sh --simcse_weight 0.1 --unsuper_temp_inbatch 1 \
#       --do_unsuper_train F --do_super_train F    # evaluate the released fMoW checkpoint (names say so)
set -euo pipefail
cd "$(dirname "$0")/main"
if [[ -n "${SEEDS:-}" ]]; then    # several seeds: main/seeds.py runs the flags below once per seed
    read -ra seeds <<< "$SEEDS"
    exec "${PYTHON:-python3}" seeds.py --seeds "${seeds[@]}" --script "../$(basename "$0")" -- "$@"
fi
exec "${PYTHON:-python3}" train_unsuper.py \
    --dataset fmow \
    --meta_type ebird_meta \
    --eval_split val \
    --load_val_op T \
    --load_cnn_features_train T \
    --load_cnn_features T \
    --load_cnn_predictions T \
    --device auto \
    --spa_enc_type gridcell \
    --frequency_num 32 \
    --max_radius 360 \
    --min_radius 0.1 \
    --num_hidden_layer 1 \
    --hidden_dim 512 \
    --spa_f_act gelu \
    --unsuper_lr 0.00005 \
    --lr 0.001 \
    --model_dir ../model_dir/models_fmow/ \
    --neg_rand_type sphericalold \
    --num_epochs 300 \
    --num_epochs_unsuper 300 \
    --eval_frequency 5 \
    --train_sample_ratio 0.05 \
    --train_sample_method stratified-fix \
    --unsuper_loss contsoftmax \
    --num_neg_rand_loc 1 \
    --rand_sample_weight 1 \
    --simcse_weight 1 \
    --unsuper_temp_inbatch 20 \
    --unsuper_temp_negloc 1 \
    --unsuper_temp_simcse 1 \
    --inat2018_resolution pretrain \
    --cnn_pred_type fewshot \
    --do_unsuper_train T \
    --load_unsuper_model T \
    --do_super_train T \
    --load_super_model T \
    --do_epoch_save F \
    "$@"
