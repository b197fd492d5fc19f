//! Corpus loaders on small files in each supported format, and every kind of bad input.

use std::fs;
use std::path::{Path, PathBuf};

use neuronxa::analysis::corpus::{Corpus, LanguageText, load_tatoeba_pairs};
use neuronxa::analysis::{AnalysisError, Lang, Sample, bundled, load, select};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/corpora")
        .join(name)
}

fn lang(code: &str) -> Lang {
    Lang::parse(code).expect("known language")
}

fn codes(corpus: &Corpus) -> Vec<String> {
    corpus
        .languages()
        .iter()
        .map(|l| l.code().to_string())
        .collect()
}

fn sentences<'a>(corpus: &'a Corpus, code: &str) -> &'a [String] {
    corpus
        .get(&lang(code))
        .map(|text| text.sentences.as_slice())
        .unwrap_or_default()
}

/// Writes files into a fresh temporary folder: (relative path, bytes).
fn folder_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, bytes) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("parent");
        }
        fs::write(path, bytes).expect("write");
    }
    dir
}

fn load_error(path: &Path) -> String {
    match load(path) {
        Ok(corpus) => panic!(
            "expected an error, loaded {} languages",
            corpus.languages.len()
        ),
        Err(error) => error.to_string(),
    }
}

#[test]
fn bundled_corpus_has_the_ten_defaults_line_aligned() {
    let corpus = bundled().expect("bundled");
    let expected = [
        "eng_Latn", "zho_Hans", "fra_Latn", "deu_Latn", "ita_Latn", "spa_Latn", "rus_Cyrl",
        "arb_Arab", "hin_Deva", "jpn_Jpan",
    ];
    assert_eq!(codes(&corpus), expected);
    assert!(corpus.len() >= 5);
    for text in &corpus.languages {
        assert_eq!(text.sentences.len(), corpus.len());
        assert_eq!(text.origin, "bundled");
    }
}

#[test]
fn flores200_folder_prefers_devtest() {
    let corpus = load(&fixture("flores200")).expect("flores");
    assert_eq!(codes(&corpus), ["eng_Latn", "fra_Latn", "zho_Hans"]);
    assert_eq!(corpus.len(), 3);
    assert_eq!(
        sentences(&corpus, "zh")[1],
        "科学家在月球南极附近发现了水冰。"
    );
    assert!(corpus.source.contains("devtest"), "{}", corpus.source);
    assert_eq!(corpus.name, "flores200");
    // Pointing at a split folder itself works too.
    let dev = load(&fixture("flores200/dev")).expect("dev");
    assert_eq!(dev.len(), 2);
    assert_eq!(sentences(&dev, "en")[0], "Dev sentence one.");
}

#[test]
fn floresplus_folder_without_extensions_and_cmn_named_chinese() {
    let corpus = load(&fixture("floresplus")).expect("flores+");
    assert_eq!(codes(&corpus), ["eng_Latn", "fra_Latn", "zho_Hans"]);
    let plain = load(&fixture("flores200")).expect("flores");
    assert_eq!(corpus.hash(), plain.hash(), "same text, same hash");
}

#[test]
fn folder_of_txt_files_with_bom_crlf_and_mixed_codes() {
    let corpus = load(&fixture("txt_folder")).expect("txt folder");
    assert_eq!(codes(&corpus), ["deu_Latn", "eng_Latn", "fra_Latn"]);
    assert_eq!(
        sentences(&corpus, "fr"),
        ["Il pleut en ville.", "Elle lit un livre chaque soir."]
    );
    assert_eq!(
        sentences(&corpus, "de")[1],
        "Sie liest jeden Abend ein Buch."
    );
    let origin = &corpus.get(&lang("fr")).expect("fr").origin;
    assert!(origin.ends_with("fr.txt"), "{origin}");
}

#[test]
fn tatoeba_pairs_merge_on_shared_english_sentences() {
    let corpus = load(&fixture("tatoeba")).expect("tatoeba");
    assert_eq!(codes(&corpus), ["eng_Latn", "deu_Latn", "fra_Latn"]);
    assert_eq!(
        sentences(&corpus, "en"),
        ["Good night.", "I like tea.", "Thank you very much."]
    );
    assert_eq!(
        sentences(&corpus, "de"),
        ["Gute Nacht.", "Ich mag Tee.", "Vielen Dank."]
    );
    assert_eq!(
        sentences(&corpus, "fr"),
        ["Bonne nuit.", "J'aime le thé.", "Merci beaucoup."]
    );
    assert!(
        corpus.source.contains("3 English sentences"),
        "{}",
        corpus.source
    );

    let pairs = load_tatoeba_pairs(&fixture("tatoeba")).expect("pairs");
    assert_eq!(pairs.len(), 2);
    assert_eq!(codes(&pairs[0]), ["eng_Latn", "deu_Latn"]);
    assert_eq!(pairs[1].len(), 4);

    // One file of a pair loads that pair alone.
    let single = load(&fixture("tatoeba/tatoeba.fra-eng.fra")).expect("one pair");
    assert_eq!(codes(&single), ["eng_Latn", "fra_Latn"]);
    assert_eq!(single.len(), 4);
}

#[test]
fn tatoeba_single_pair_folder_and_disjoint_pairs() {
    let corpus = load(&fixture("tatoeba_single")).expect("single");
    assert_eq!(codes(&corpus), ["eng_Latn", "zho_Hans"]);
    let error = load_error(&fixture("tatoeba_disjoint"));
    assert!(error.contains("share no English sentence"), "{error}");
    assert!(error.contains("tatoeba_disjoint"), "{error}");
}

#[test]
fn tsv_with_a_header_of_codes() {
    let corpus = load(&fixture("parallel.tsv")).expect("tsv");
    assert_eq!(codes(&corpus), ["eng_Latn", "fra_Latn", "arb_Arab"]);
    assert_eq!(sentences(&corpus, "en")[1], "He said \"hello\".");
    assert_eq!(sentences(&corpus, "ar")[0], "القطة نائمة.");
}

#[test]
fn jsonl_objects_in_any_key_order() {
    let corpus = load(&fixture("parallel.jsonl")).expect("jsonl");
    assert_eq!(codes(&corpus), ["eng_Latn", "deu_Latn", "hin_Deva"]);
    assert_eq!(
        sentences(&corpus, "de"),
        ["Die Katze schläft.", "Er kommt morgen."]
    );
    assert_eq!(sentences(&corpus, "hi")[1], "वह कल आएगा।");
}

#[test]
fn hash_is_stable_and_ignores_language_order() {
    let corpus = load(&fixture("parallel.tsv")).expect("tsv");
    let mut reordered = corpus.clone();
    reordered.languages.reverse();
    reordered.name = "other".into();
    assert_eq!(corpus.hash(), reordered.hash());
    assert_eq!(corpus.hash().len(), 64);
    let mut changed = corpus.clone();
    changed.languages[0].sentences[0].push('!');
    assert_ne!(corpus.hash(), changed.hash());
}

#[test]
fn select_first_and_random_keep_the_pairs_aligned() {
    let corpus = load(&fixture("flores200")).expect("flores");
    let picked = select(&corpus, &[lang("fr"), lang("en")], 2, Sample::First).expect("first");
    assert_eq!(codes(&picked), ["fra_Latn", "eng_Latn"]);
    assert_eq!(picked.len(), 2);
    assert_eq!(sentences(&picked, "en")[1], sentences(&corpus, "en")[1]);

    let random = select(
        &corpus,
        &[lang("en"), lang("zh")],
        2,
        Sample::Random { seed: 9 },
    )
    .expect("random");
    let again = select(
        &corpus,
        &[lang("en"), lang("zh")],
        2,
        Sample::Random { seed: 9 },
    )
    .expect("again");
    assert_eq!(random, again);
    for (english, chinese) in sentences(&random, "en")
        .iter()
        .zip(sentences(&random, "zh"))
    {
        let index = sentences(&corpus, "en")
            .iter()
            .position(|s| s == english)
            .expect("found");
        assert_eq!(&sentences(&corpus, "zh")[index], chinese);
    }
}

#[test]
fn select_errors_name_the_language_and_count() {
    let corpus = load(&fixture("flores200")).expect("flores");
    let error = select(&corpus, &[lang("en"), lang("fr")], 4, Sample::First).expect_err("n");
    assert_eq!(
        error.to_string(),
        "4 sentences requested but eng_Latn (English) has only 3"
    );
    let error = select(&corpus, &[lang("de")], 1, Sample::First).expect_err("missing");
    let text = error.to_string();
    assert!(
        text.contains("deu_Latn") && text.contains("eng_Latn, fra_Latn, zho_Hans"),
        "{text}"
    );
    assert!(select(&corpus, &[], 1, Sample::First).is_err());
    assert!(select(&corpus, &[lang("en")], 0, Sample::First).is_err());
    assert!(select(&corpus, &[lang("en"), lang("eng")], 1, Sample::First).is_err());
}

#[test]
fn unequal_lengths_name_both_files() {
    let dir = folder_with(&[
        ("eng_Latn.txt", b"One.\nTwo.\nThree.\n"),
        ("fra_Latn.txt", b"Un.\nDeux.\n"),
    ]);
    let error = load_error(dir.path());
    assert!(
        error.contains("fra_Latn.txt has 2 sentences but"),
        "{error}"
    );
    assert!(
        error.contains("eng_Latn.txt has 3") || error.contains("eng_Latn.txt"),
        "{error}"
    );
    assert!(error.contains("line 3"), "{error}");
}

#[test]
fn empty_and_blank_lines_are_errors_with_their_line() {
    let dir = folder_with(&[
        ("eng_Latn.txt", b"One.\n\nThree.\n"),
        ("fra_Latn.txt", b"Un.\nDeux.\nTrois.\n"),
    ]);
    let error = load_error(dir.path());
    assert!(
        error.ends_with("eng_Latn.txt:2: empty line: every line must hold one sentence"),
        "{error}"
    );
    let dir = folder_with(&[
        ("eng_Latn.txt", b"One.\n  \t\n"),
        ("fra_Latn.txt", b"Un.\nDeux.\n"),
    ]);
    assert!(load_error(dir.path()).contains("eng_Latn.txt:2: empty line"));
    let dir = folder_with(&[("eng_Latn.txt", b""), ("fra_Latn.txt", b"Un.\n")]);
    let error = load_error(dir.path());
    assert!(error.contains("eng_Latn.txt: no sentences"), "{error}");
}

#[test]
fn invalid_utf8_names_the_line() {
    let dir = folder_with(&[
        ("eng_Latn.txt", b"One.\nTwo \xff\xfe.\n"),
        ("fra_Latn.txt", b"Un.\nDeux.\n"),
    ]);
    let error = load(dir.path()).expect_err("bad utf-8");
    assert!(
        matches!(error, AnalysisError::InvalidUtf8 { line: 2, .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("eng_Latn.txt:2: not valid UTF-8"),
        "{error}"
    );
}

#[test]
fn duplicate_and_unknown_languages_in_folders() {
    let dir = folder_with(&[("en.txt", b"One.\n"), ("eng_Latn.txt", b"One.\n")]);
    let error = load_error(dir.path());
    assert!(
        error.starts_with("language eng_Latn appears twice"),
        "{error}"
    );
    assert!(
        error.contains("en.txt") && error.contains("eng_Latn.txt"),
        "{error}"
    );
    let dir = folder_with(&[("eng_Latn.txt", b"One.\n"), ("readme.txt", b"Hello.\n")]);
    let error = load_error(dir.path());
    assert!(
        error.contains("readme.txt: the file name should be a language code"),
        "{error}"
    );
}

#[test]
fn folders_and_files_that_are_no_corpus() {
    let dir = folder_with(&[("notes.md", b"nothing\n")]);
    assert!(load_error(dir.path()).contains("no corpus found"));
    let error = load_error(&fixture("txt_folder/fr.txt"));
    assert!(error.contains("single language"), "{error}");
    let error = load_error(&fixture("does_not_exist"));
    assert!(error.starts_with("cannot read"), "{error}");
    let dir = folder_with(&[("corpus.csv", b"en,fr\n")]);
    assert!(load_error(&dir.path().join("corpus.csv")).contains("unrecognised corpus file"));
    let dir = folder_with(&[("tatoeba.fra-eng.fra", b"Bonjour.\n")]);
    let error = load_error(dir.path());
    assert!(error.contains("tatoeba.fra-eng.eng is missing"), "{error}");
}

#[test]
fn flores_with_a_stray_file_without_extension() {
    let dir = folder_with(&[
        ("devtest/eng_Latn", b"One.\n"),
        ("devtest/fra_Latn", b"Un.\n"),
        ("devtest/LICENSE", b"CC\n"),
    ]);
    let error = load_error(dir.path());
    assert!(
        error.contains("LICENSE: the file name should be a language code"),
        "{error}"
    );
    let dir = folder_with(&[
        ("devtest/eng_Latn.devtest", b"One.\n"),
        ("devtest/fra_Latn.devtest", b"Un.\nDeux.\n"),
    ]);
    assert!(load_error(dir.path()).contains("has 2 sentences but"));
}

#[test]
fn bad_tsv_files() {
    let cases: [(&[u8], &str); 6] = [
        (
            b"en\tfr\nOne.\tUn.\nTwo.\n",
            "bad.tsv:3: 1 tab-separated cells, but the header names 2 languages",
        ),
        (
            b"en\tfr\nOne.\t \n",
            "bad.tsv:2: empty sentence for fra_Latn",
        ),
        (
            b"en\tfr\teng\nOne.\tUn.\tOne.\n",
            "language eng_Latn appears twice",
        ),
        (
            b"en\tqq\nOne.\tUn.\n",
            "bad.tsv:1: column 2: unknown language 'qq'",
        ),
        (b"en\tfr\n", "bad.tsv: no sentences"),
        (
            b"en\tfr\nOne.\tUn.\n\nTwo.\tDeux.\n",
            "bad.tsv:3: 1 tab-separated cells",
        ),
    ];
    for (content, expected) in cases {
        let dir = folder_with(&[("bad.tsv", content)]);
        let error = load_error(&dir.path().join("bad.tsv"));
        assert!(error.contains(expected), "{error} — expected {expected}");
    }
}

#[test]
fn bad_jsonl_files() {
    let cases: [(&[u8], &str); 7] = [
        (b"{\"en\": \"One.\"}\n[1, 2]\n", "bad.jsonl:2: invalid JSON"),
        (
            b"{\"en\": \"One.\", \"fr\": \"Un.\"}\n{\"en\": \"Two.\", \"de\": \"Zwei.\"}\n",
            "bad.jsonl:2: languages differ from line 1 (missing: [fra_Latn], extra: [deu_Latn])",
        ),
        (
            b"{\"en\": \"One.\", \"eng\": \"One.\"}\n",
            "bad.jsonl:1: language eng_Latn appears twice",
        ),
        (
            b"{\"en\": \"One.\", \"en\": \"Two.\"}\n",
            "bad.jsonl:1: language eng_Latn appears twice",
        ),
        (
            b"{\"en\": \"One.\", \"fr\": 3}\n",
            "bad.jsonl:1: the value for \"fr\" must be a string",
        ),
        (
            b"{\"en\": \"One.\"}\n\n{\"en\": \"Two.\"}\n",
            "bad.jsonl:2: empty line",
        ),
        (
            b"{\"en\": \"One.\", \"xx\": \"?\"}\n",
            "bad.jsonl:1: key \"xx\": unknown language 'xx'",
        ),
    ];
    for (content, expected) in cases {
        let dir = folder_with(&[("bad.jsonl", content)]);
        let error = load_error(&dir.path().join("bad.jsonl"));
        assert!(error.contains(expected), "{error} — expected {expected}");
    }
    let dir = folder_with(&[("empty.jsonl", b"")]);
    assert!(load_error(&dir.path().join("empty.jsonl")).contains("no sentences"));
}

#[test]
fn corpus_new_checks_its_parts() {
    let text = |code: &str, sentences: &[&str]| LanguageText {
        lang: lang(code),
        sentences: sentences.iter().map(|s| s.to_string()).collect(),
        origin: format!("{code}.txt"),
    };
    assert!(Corpus::new("ok", "test", vec![text("en", &["a"]), text("fr", &["b"])]).is_ok());
    assert!(Corpus::new("none", "test", vec![]).is_err());
    let error = Corpus::new("dup", "test", vec![text("en", &["a"]), text("eng", &["b"])])
        .expect_err("duplicate");
    assert!(matches!(error, AnalysisError::DuplicateLanguage { .. }));
    let error = Corpus::new("blank", "test", vec![text("en", &["a", " "])]).expect_err("blank");
    assert_eq!(error.to_string(), "en.txt:2: empty sentence for eng_Latn");
}

#[test]
fn select_rejects_a_hand_made_corpus_that_is_not_parallel() {
    let mut corpus = load(&fixture("flores200")).expect("flores");
    corpus.languages[1].sentences.pop();
    let error = select(&corpus, &[lang("en")], 1, Sample::Random { seed: 1 }).expect_err("ragged");
    assert!(
        matches!(error, AnalysisError::UnequalLength { .. }),
        "{error}"
    );
}
