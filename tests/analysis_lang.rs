//! Language codes: what users type, normalised to FLORES-200.

use neuronxa::analysis::{DEFAULT_LANGUAGES, Lang};

fn code(input: &str) -> String {
    match Lang::parse(input) {
        Ok(lang) => lang.code().to_string(),
        Err(error) => format!("error: {error}"),
    }
}

#[test]
fn the_ten_defaults_map_to_flores() {
    let expected = [
        "eng_Latn", "zho_Hans", "fra_Latn", "deu_Latn", "ita_Latn", "spa_Latn", "rus_Cyrl",
        "arb_Arab", "hin_Deva", "jpn_Jpan",
    ];
    let got: Vec<String> = DEFAULT_LANGUAGES.iter().map(|c| code(c)).collect();
    assert_eq!(got, expected);
    let defaults: Vec<String> = Lang::defaults()
        .iter()
        .map(|l| l.code().to_string())
        .collect();
    assert_eq!(defaults, expected);
}

#[test]
fn iso_639_1_639_3_and_flores_forms_agree() {
    for (inputs, flores) in [
        (
            &["en", "eng", "eng_Latn", "ENG_LATN", "eng-latn", " English "][..],
            "eng_Latn",
        ),
        (
            &["zh", "zho", "chi", "cmn", "zh-Hans", "zh_CN", "cmn_Hans"][..],
            "zho_Hans",
        ),
        (
            &["zh-Hant", "zh-TW", "zho_hant", "cmn_Hant"][..],
            "zho_Hant",
        ),
        (&["ar", "ara", "arb", "arb_Arab", "Arabic"][..], "arb_Arab"),
        (&["fa", "fas", "per", "pes"][..], "pes_Arab"),
        (&["fr", "fra", "fre", "French"][..], "fra_Latn"),
        (&["de", "deu", "ger"][..], "deu_Latn"),
        (&["ms", "msa", "zsm"][..], "zsm_Latn"),
        (&["lv", "lav", "lvs"][..], "lvs_Latn"),
        (&["sw", "swa", "swh"][..], "swh_Latn"),
        (&["no", "nb", "nob"][..], "nob_Latn"),
        (&["ne", "nep", "npi"][..], "npi_Deva"),
        (&["sq", "alb", "als"][..], "als_Latn"),
        (&["ja", "jpn"][..], "jpn_Jpan"),
        (&["ko", "kor"][..], "kor_Hang"),
        (&["hi", "hin"][..], "hin_Deva"),
        (&["ru", "rus"][..], "rus_Cyrl"),
        (&["ace"][..], "ace_Latn"),
    ] {
        for input in inputs {
            assert_eq!(code(input), flores, "input {input:?}");
        }
    }
}

#[test]
fn names_and_short_codes() {
    let zh = Lang::parse("zh").expect("zh");
    assert_eq!(zh.name(), "Chinese (Simplified)");
    assert_eq!(zh.short(), "zh");
    assert_eq!(zh.iso_639_3(), "zho");
    assert_eq!(zh.script(), "Hans");
    let en = Lang::parse("eng_Latn").expect("en");
    assert_eq!((en.name(), en.short()), ("English", "en"));
    let asturian = Lang::parse("ast").expect("ast");
    assert_eq!((asturian.name(), asturian.short()), ("Asturian", "ast"));
    assert!(Lang::all_known().len() >= 200);
}

#[test]
fn well_formed_flores_codes_outside_the_table_are_accepted() {
    let lang = Lang::parse("xyz_latn").expect("well-formed");
    assert_eq!(lang.code(), "xyz_Latn");
    assert_eq!(lang.name(), "xyz_Latn");
    assert_eq!(lang.short(), "xyz");
    assert!(!lang.is_known());
    // A known language in another script: the code is built from its ISO 639-1 part.
    assert_eq!(code("sr-Latn"), "srp_Latn");
}

#[test]
fn unknown_codes_are_errors_with_suggestions() {
    let error = Lang::parse("frz").expect_err("unknown").to_string();
    assert!(error.contains("unknown language 'frz'"), "{error}");
    assert!(error.contains("did you mean"), "{error}");
    assert!(error.contains("fra_Latn (French)"), "{error}");
    let error = Lang::parse("germn").expect_err("unknown").to_string();
    assert!(error.contains("deu_Latn (German)"), "{error}");
    for bad in ["", "e", "english language", "eng_Lat", "12_Latn", "xyzw"] {
        assert!(Lang::parse(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn serialises_as_the_code_and_normalises_when_read() {
    let lang = Lang::parse("fr").expect("fr");
    assert_eq!(serde_json::to_string(&lang).expect("json"), "\"fra_Latn\"");
    let read: Lang = serde_json::from_str("\"fr\"").expect("read");
    assert_eq!(read, lang);
    assert!(serde_json::from_str::<Lang>("\"qqq\"").is_err());
    let list: Vec<Lang> = serde_json::from_str(r#"["en","zho_Hans"]"#).expect("list");
    assert_eq!(list[1].code(), "zho_Hans");
    assert_eq!(lang.to_string(), "fra_Latn");
    assert_eq!(
        "de".parse::<Lang>().map(|l| l.name().to_string()).ok(),
        Some("German".into())
    );
}

#[test]
fn ordering_is_by_code() {
    let mut langs: Vec<Lang> = ["zh", "en", "ar"]
        .iter()
        .filter_map(|c| Lang::parse(c).ok())
        .collect();
    langs.sort();
    let codes: Vec<&str> = langs.iter().map(Lang::code).collect();
    assert_eq!(codes, ["arb_Arab", "eng_Latn", "zho_Hans"]);
}
