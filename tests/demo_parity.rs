//! The demo model (SmolLM2-135M-Instruct, Q4_1 GGUF) against transformers loading the same
//! GGUF: token ids of 100 sentences (10 per language) identical; pooled NAV within 1e-4;
//! NAS identical except where a gate is within 1e-5 of zero; hidden states within
//! 1e-4 + 1e-5·max|vector| (SmolLM2's residual stream reaches |h| ≈ 3e4, where f32 alone
//! differs by 1e-3); next-token log-probability sums within 1e-3.
//! See tests/fixtures/README.md for how the reference was made.

mod common;

use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use neuronxa::engine::{DTypeChoice, DeviceChoice, ExtractOptions, Model, ModelSource};

#[derive(serde::Deserialize)]
struct Sentence {
    text: String,
}

#[test]
fn demo_model_matches_transformers() {
    let model = Model::load(
        &ModelSource::Gguf(common::demo_model()),
        DeviceChoice::Cpu,
        DTypeChoice::F32,
    )
    .unwrap();
    let dir = common::fixtures().join("demo");
    let reference =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let sentences: Vec<Sentence> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sentences.json")).unwrap())
            .unwrap();
    assert_eq!(sentences.len(), 100);
    let texts: Vec<String> = sentences.into_iter().map(|s| s.text).collect();
    let get = |name: &str| -> Vec<f32> {
        reference[name]
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };

    for (k, text) in texts.iter().enumerate() {
        let ours = model.tokenizer.encode(text).unwrap().ids;
        let theirs: Vec<u32> = reference[&format!("s{k}.input_ids")]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect();
        assert_eq!(ours, theirs, "token ids of sentence {k}: {text}");
    }

    let states = model
        .extract(
            &texts,
            &ExtractOptions {
                batch_size: 16,
                ..Default::default()
            },
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
    let layers = [0usize, 15, 29];
    let hidden_indices = [0usize, 15, 30];
    let mut near_zero_skipped = 0;
    for k in 0..texts.len() {
        let (nas_ref, nav_ref, gate) = (
            get(&format!("s{k}.nas_weighted")),
            get(&format!("s{k}.nav_weighted")),
            get(&format!("s{k}.gate_min_abs")),
        );
        for (row, &layer) in layers.iter().enumerate() {
            let width = states.d_ff;
            let nas = states.vector(neuronxa::engine::states::StateKind::Nas, k, layer);
            let nav = states.vector(neuronxa::engine::states::StateKind::Nav, k, layer);
            for i in 0..width {
                let r = row * width + i;
                assert!(
                    (nav[i] - nav_ref[r]).abs() <= 1e-4,
                    "s{k} layer {layer} NAV[{i}]: {} vs {}",
                    nav[i],
                    nav_ref[r]
                );
                if gate[r] < 1e-5 {
                    near_zero_skipped += 1;
                } else {
                    assert!(
                        (nas[i] - nas_ref[r]).abs() <= 1e-6,
                        "s{k} layer {layer} NAS[{i}]: {} vs {}",
                        nas[i],
                        nas_ref[r]
                    );
                }
            }
        }
        for (name, kind) in [
            (
                "hidden_weighted",
                neuronxa::engine::states::StateKind::HiddenPooled,
            ),
            (
                "hidden_last",
                neuronxa::engine::states::StateKind::HiddenLast,
            ),
        ] {
            let reference = get(&format!("s{k}.{name}"));
            for (row, &index) in hidden_indices.iter().enumerate() {
                let theirs = &reference[row * states.d_model..(row + 1) * states.d_model];
                let ours = states.vector(kind, k, index);
                let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
                let tolerance = 1e-4 + 1e-5 * scale;
                for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
                    assert!(
                        (a - b).abs() <= tolerance,
                        "s{k} {name}[{index}][{i}]: {a} vs {b} (tolerance {tolerance})"
                    );
                }
            }
        }
    }
    assert!(
        near_zero_skipped < 1000,
        "{near_zero_skipped} near-zero gates skipped"
    );

    for k in (0..100).step_by(10) {
        let ids = model.tokenizer.encode(&texts[k]).unwrap().ids;
        let t = ids.len();
        let ids = Tensor::from_vec(ids, (1, t), &Device::Cpu).unwrap();
        let ours: f32 = model
            .decoder
            .next_token_logprobs(&ids)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        let theirs = get(&format!("s{k}.logprob_sum"))[0];
        assert!(
            (ours - theirs).abs() <= 1e-3,
            "s{k} log-prob sum {ours} vs {theirs}"
        );
    }
}
