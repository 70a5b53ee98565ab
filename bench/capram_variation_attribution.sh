#!/usr/bin/env bash
# Which variation source costs the CAP-RAM ResNet-20 its accuracy (docs/validation.md,
# "ResNet-20 on CIFAR-10 in one macro"): 4 chips x the first 200 CIFAR-10 test images per
# row, one source at a time on top of examples/cap_ram_65nm_variation.yaml.
#   bash bench/capram_variation_attribution.sh DATA_DIR [OUT_DIR]
# Each run is an `imcsim montecarlo` folder with montecarlo.json (resumable: rerun to finish).
set -euo pipefail
data=${1:?usage: capram_variation_attribution.sh DATA_DIR [OUT_DIR]}
out=${2:-results/attr}
export OMP_NUM_THREADS=1
mc=(imcsim montecarlo examples/cap_ram_65nm_variation.yaml workloads/resnet20_cifar10_capram.yaml
    --chips 4 --samples 200 --data-dir "$data" --workers 2 --set crossbar.adc.calibration=none)
off=(--set variation.mac.capacitance_mismatch=0 --set variation.adc.offset=0mV
     --set variation.adc.noise=0mV --set variation.adc.unit_cap_mismatch=0)
cal=(--set crossbar.adc.calibration=two_step)
"${mc[@]}" --out "$out/all"
"${mc[@]}" --out "$out/all_cal" "${cal[@]}"
"${mc[@]}" --out "$out/none" "${off[@]}"
"${mc[@]}" --out "$out/none_cal" "${off[@]}" "${cal[@]}"
"${mc[@]}" --out "$out/none_noktc" "${off[@]}" --set crossbar.mac.ktc_noise=false
"${mc[@]}" --out "$out/none_nopar" "${off[@]}" --set crossbar.mac.parasitic_capacitance=0fF
"${mc[@]}" --out "$out/offset" "${off[@]}" --set variation.adc.offset=5mV
"${mc[@]}" --out "$out/offset_cal" "${off[@]}" --set variation.adc.offset=5mV "${cal[@]}"
"${mc[@]}" --out "$out/unitcap" "${off[@]}" --set variation.adc.unit_cap_mismatch=0.01
"${mc[@]}" --out "$out/maccap" "${off[@]}" --set variation.mac.capacitance_mismatch=0.01
"${mc[@]}" --out "$out/maccap_cal" "${off[@]}" --set variation.mac.capacitance_mismatch=0.01 "${cal[@]}"
"${mc[@]}" --out "$out/noise" "${off[@]}" --set variation.adc.noise=1mV
imcsim run arch_configs/cap_ram_65nm.yaml workloads/resnet20_cifar10_capram.yaml \
    --data-dir "$data" --samples 200 --out "$out/ideal200" --quiet
