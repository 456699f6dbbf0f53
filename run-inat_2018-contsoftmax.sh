#!/usr/bin/env bash
# CSP-MC-BLD on iNat2018 with the original run script's flags (the values its shell variables resolve to):
# pre-train a gridcell location encoder with contsoftmax for 30 epochs on all training locations and image
# features, then fine-tune it for 200 epochs on a 5 % stratified few-shot subset; evaluate every 5 epochs.
# Data: $CSP_DATA_DIR/inat_2018/ (see main/paths.py). Output: ../model_dir/models_inat_2018/ (from main/).
# Extra arguments are passed on and win over the values below, e.g.
#   bash run-inat_2018-contsoftmax.sh --num_epochs_unsuper 1 --num_epochs 2 --eval_frequency 1 \
#       --device cpu --model_dir ../model_dir/try_inat_2018/    # a short trial run, in its own folder
#   SEEDS="0 1 2 3 4" bash run-inat_2018-contsoftmax.sh    # once per seed, each in seed{S}/ of the model
#       folder, then the mean ± std of the final Top-1s (main/seeds.py)
#   bash run-inat_2018-contsoftmax.sh --load_unsuper_model T --load_super_model T    # resume a killed run
set -euo pipefail
cd "$(dirname "$0")/main"
if [[ -n "${SEEDS:-}" ]]; then    # several seeds: main/seeds.py runs the flags below once per seed
    read -ra seeds <<< "$SEEDS"
    exec "${PYTHON:-python3}" seeds.py --seeds "${seeds[@]}" --script "../$(basename "$0")" -- "$@"
fi
exec "${PYTHON:-python3}" train_unsuper.py \
    --dataset inat_2018 \
    --meta_type ebird_meta \
    --eval_split val \
    --load_val_op T \
    --load_cnn_features_train T \
    --load_cnn_features T \
    --load_cnn_predictions F \
    --device auto \
    --spa_enc_type gridcell \
    --frequency_num 32 \
    --max_radius 360 \
    --min_radius 0.1 \
    --num_hidden_layer 1 \
    --hidden_dim 512 \
    --spa_f_act leakyrelu \
    --unsuper_lr 0.0005 \
    --batch_size 1024 \
    --num_filts 256 \
    --lr 0.001 \
    --model_dir ../model_dir/models_inat_2018/ \
    --neg_rand_type sphericalold \
    --num_neg_rand_loc 1 \
    --rand_sample_weight 1 \
    --simcse_weight 1 \
    --num_epochs 200 \
    --num_epochs_unsuper 30 \
    --eval_frequency 5 \
    --dropout 0.5 \
    --train_sample_ratio 0.05 \
    --train_sample_method stratified-fix \
    --unsuper_loss contsoftmax \
    --unsuper_temp_inbatch 20 \
    --unsuper_temp_negloc 1 \
    --unsuper_temp_simcse 1 \
    --inat2018_resolution pretrain \
    --cnn_pred_type full \
    --do_unsuper_train T \
    --load_unsuper_model F \
    --do_super_train T \
    --load_super_model F \
    "$@"
