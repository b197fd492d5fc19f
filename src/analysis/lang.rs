//! Languages, named by their FLORES-200 code (`eng_Latn`): ISO 639-3 language + ISO 15924 script.
//!
//! [`Lang::parse`] accepts what people type: ISO 639-1 (`en`), ISO 639-3 (`eng`, also the
//! bibliographic `fre`, `ger`, … and macrolanguage codes such as `ara`, `zho`, `fas`), FLORES
//! codes in any case (`ENG_latn`, `eng-Latn`), `zh-Hant`-style tags and English names
//! (`French`). Macrolanguages resolve to the variety FLORES-200 uses: `ar` → `arb_Arab`,
//! `zh` → `zho_Hans`, `fa` → `pes_Arab`, `ms` → `zsm_Latn`, `lv` → `lvs_Latn`, …
//! A well-formed FLORES code that is not in the table (`xyz_Latn`) is accepted as it is.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{AnalysisError, Result};

/// The ten languages the project ships a corpus for, as ISO 639-1 codes.
pub const DEFAULT_LANGUAGES: [&str; 10] =
    ["en", "zh", "fr", "de", "it", "es", "ru", "ar", "hi", "ja"];

/// A language, identified by its normalised FLORES-200 code. Serialises as that code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Lang {
    code: String,
}

struct KnownLanguage {
    code: &'static str,
    iso_639_1: Option<&'static str>,
    name: &'static str,
}

const fn known(
    code: &'static str,
    iso_639_1: Option<&'static str>,
    name: &'static str,
) -> KnownLanguage {
    KnownLanguage {
        code,
        iso_639_1,
        name,
    }
}

/// The FLORES-200 languages (plus `arb_Latn`, `min_Arab`, `sat_Olck` from FLORES+).
/// English names follow FLORES, shortened where the FLORES variety is what people mean by the
/// plain name (`arb_Arab` "Arabic" rather than "Modern Standard Arabic").
const KNOWN_LANGUAGES: &[KnownLanguage] = &[
    known("ace_Arab", None, "Acehnese (Arabic script)"),
    known("ace_Latn", None, "Acehnese (Latin script)"),
    known("acm_Arab", None, "Mesopotamian Arabic"),
    known("acq_Arab", None, "Ta'izzi-Adeni Arabic"),
    known("aeb_Arab", None, "Tunisian Arabic"),
    known("afr_Latn", Some("af"), "Afrikaans"),
    known("ajp_Arab", None, "South Levantine Arabic"),
    known("aka_Latn", Some("ak"), "Akan"),
    known("als_Latn", Some("sq"), "Albanian"),
    known("amh_Ethi", Some("am"), "Amharic"),
    known("apc_Arab", None, "North Levantine Arabic"),
    known("arb_Arab", Some("ar"), "Arabic"),
    known("arb_Latn", None, "Arabic (Latin script)"),
    known("ars_Arab", None, "Najdi Arabic"),
    known("ary_Arab", None, "Moroccan Arabic"),
    known("arz_Arab", None, "Egyptian Arabic"),
    known("asm_Beng", Some("as"), "Assamese"),
    known("ast_Latn", None, "Asturian"),
    known("awa_Deva", None, "Awadhi"),
    known("ayr_Latn", Some("ay"), "Aymara"),
    known("azb_Arab", None, "South Azerbaijani"),
    known("azj_Latn", Some("az"), "Azerbaijani"),
    known("bak_Cyrl", Some("ba"), "Bashkir"),
    known("bam_Latn", Some("bm"), "Bambara"),
    known("ban_Latn", None, "Balinese"),
    known("bel_Cyrl", Some("be"), "Belarusian"),
    known("bem_Latn", None, "Bemba"),
    known("ben_Beng", Some("bn"), "Bengali"),
    known("bho_Deva", None, "Bhojpuri"),
    known("bjn_Arab", None, "Banjar (Arabic script)"),
    known("bjn_Latn", None, "Banjar (Latin script)"),
    known("bod_Tibt", Some("bo"), "Tibetan"),
    known("bos_Latn", Some("bs"), "Bosnian"),
    known("bug_Latn", None, "Buginese"),
    known("bul_Cyrl", Some("bg"), "Bulgarian"),
    known("cat_Latn", Some("ca"), "Catalan"),
    known("ceb_Latn", None, "Cebuano"),
    known("ces_Latn", Some("cs"), "Czech"),
    known("cjk_Latn", None, "Chokwe"),
    known("ckb_Arab", None, "Central Kurdish"),
    known("crh_Latn", None, "Crimean Tatar"),
    known("cym_Latn", Some("cy"), "Welsh"),
    known("dan_Latn", Some("da"), "Danish"),
    known("deu_Latn", Some("de"), "German"),
    known("dik_Latn", None, "Southwestern Dinka"),
    known("dyu_Latn", None, "Dyula"),
    known("dzo_Tibt", Some("dz"), "Dzongkha"),
    known("ell_Grek", Some("el"), "Greek"),
    known("eng_Latn", Some("en"), "English"),
    known("epo_Latn", Some("eo"), "Esperanto"),
    known("est_Latn", Some("et"), "Estonian"),
    known("eus_Latn", Some("eu"), "Basque"),
    known("ewe_Latn", Some("ee"), "Ewe"),
    known("fao_Latn", Some("fo"), "Faroese"),
    known("fij_Latn", Some("fj"), "Fijian"),
    known("fin_Latn", Some("fi"), "Finnish"),
    known("fon_Latn", None, "Fon"),
    known("fra_Latn", Some("fr"), "French"),
    known("fur_Latn", None, "Friulian"),
    known("fuv_Latn", Some("ff"), "Nigerian Fulfulde"),
    known("gaz_Latn", Some("om"), "Oromo"),
    known("gla_Latn", Some("gd"), "Scottish Gaelic"),
    known("gle_Latn", Some("ga"), "Irish"),
    known("glg_Latn", Some("gl"), "Galician"),
    known("grn_Latn", Some("gn"), "Guarani"),
    known("guj_Gujr", Some("gu"), "Gujarati"),
    known("hat_Latn", Some("ht"), "Haitian Creole"),
    known("hau_Latn", Some("ha"), "Hausa"),
    known("heb_Hebr", Some("he"), "Hebrew"),
    known("hin_Deva", Some("hi"), "Hindi"),
    known("hne_Deva", None, "Chhattisgarhi"),
    known("hrv_Latn", Some("hr"), "Croatian"),
    known("hun_Latn", Some("hu"), "Hungarian"),
    known("hye_Armn", Some("hy"), "Armenian"),
    known("ibo_Latn", Some("ig"), "Igbo"),
    known("ilo_Latn", None, "Ilocano"),
    known("ind_Latn", Some("id"), "Indonesian"),
    known("isl_Latn", Some("is"), "Icelandic"),
    known("ita_Latn", Some("it"), "Italian"),
    known("jav_Latn", Some("jv"), "Javanese"),
    known("jpn_Jpan", Some("ja"), "Japanese"),
    known("kab_Latn", None, "Kabyle"),
    known("kac_Latn", None, "Jingpho"),
    known("kam_Latn", None, "Kamba"),
    known("kan_Knda", Some("kn"), "Kannada"),
    known("kas_Arab", Some("ks"), "Kashmiri (Arabic script)"),
    known("kas_Deva", None, "Kashmiri (Devanagari script)"),
    known("kat_Geor", Some("ka"), "Georgian"),
    known("kaz_Cyrl", Some("kk"), "Kazakh"),
    known("kbp_Latn", None, "Kabiyè"),
    known("kea_Latn", None, "Kabuverdianu"),
    known("khk_Cyrl", Some("mn"), "Mongolian"),
    known("khm_Khmr", Some("km"), "Khmer"),
    known("kik_Latn", Some("ki"), "Kikuyu"),
    known("kin_Latn", Some("rw"), "Kinyarwanda"),
    known("kir_Cyrl", Some("ky"), "Kyrgyz"),
    known("kmb_Latn", None, "Kimbundu"),
    known("kmr_Latn", Some("ku"), "Northern Kurdish"),
    known("knc_Arab", None, "Central Kanuri (Arabic script)"),
    known("knc_Latn", Some("kr"), "Central Kanuri (Latin script)"),
    known("kon_Latn", Some("kg"), "Kikongo"),
    known("kor_Hang", Some("ko"), "Korean"),
    known("lao_Laoo", Some("lo"), "Lao"),
    known("lij_Latn", None, "Ligurian"),
    known("lim_Latn", Some("li"), "Limburgish"),
    known("lin_Latn", Some("ln"), "Lingala"),
    known("lit_Latn", Some("lt"), "Lithuanian"),
    known("lmo_Latn", None, "Lombard"),
    known("ltg_Latn", None, "Latgalian"),
    known("ltz_Latn", Some("lb"), "Luxembourgish"),
    known("lua_Latn", None, "Luba-Kasai"),
    known("lug_Latn", Some("lg"), "Ganda"),
    known("luo_Latn", None, "Luo"),
    known("lus_Latn", None, "Mizo"),
    known("lvs_Latn", Some("lv"), "Latvian"),
    known("mag_Deva", None, "Magahi"),
    known("mai_Deva", None, "Maithili"),
    known("mal_Mlym", Some("ml"), "Malayalam"),
    known("mar_Deva", Some("mr"), "Marathi"),
    known("min_Arab", None, "Minangkabau (Arabic script)"),
    known("min_Latn", None, "Minangkabau (Latin script)"),
    known("mkd_Cyrl", Some("mk"), "Macedonian"),
    known("mlt_Latn", Some("mt"), "Maltese"),
    known("mni_Beng", None, "Meitei (Bengali script)"),
    known("mos_Latn", None, "Mossi"),
    known("mri_Latn", Some("mi"), "Maori"),
    known("mya_Mymr", Some("my"), "Burmese"),
    known("nld_Latn", Some("nl"), "Dutch"),
    known("nno_Latn", Some("nn"), "Norwegian Nynorsk"),
    known("nob_Latn", Some("nb"), "Norwegian Bokmål"),
    known("npi_Deva", Some("ne"), "Nepali"),
    known("nso_Latn", None, "Northern Sotho"),
    known("nus_Latn", None, "Nuer"),
    known("nya_Latn", Some("ny"), "Nyanja"),
    known("oci_Latn", Some("oc"), "Occitan"),
    known("ory_Orya", Some("or"), "Odia"),
    known("pag_Latn", None, "Pangasinan"),
    known("pan_Guru", Some("pa"), "Punjabi"),
    known("pap_Latn", None, "Papiamento"),
    known("pbt_Arab", Some("ps"), "Pashto"),
    known("pes_Arab", Some("fa"), "Persian"),
    known("plt_Latn", Some("mg"), "Malagasy"),
    known("pol_Latn", Some("pl"), "Polish"),
    known("por_Latn", Some("pt"), "Portuguese"),
    known("prs_Arab", None, "Dari"),
    known("quy_Latn", Some("qu"), "Ayacucho Quechua"),
    known("ron_Latn", Some("ro"), "Romanian"),
    known("run_Latn", Some("rn"), "Rundi"),
    known("rus_Cyrl", Some("ru"), "Russian"),
    known("sag_Latn", Some("sg"), "Sango"),
    known("san_Deva", Some("sa"), "Sanskrit"),
    known("sat_Olck", None, "Santali"),
    known("scn_Latn", None, "Sicilian"),
    known("shn_Mymr", None, "Shan"),
    known("sin_Sinh", Some("si"), "Sinhala"),
    known("slk_Latn", Some("sk"), "Slovak"),
    known("slv_Latn", Some("sl"), "Slovenian"),
    known("smo_Latn", Some("sm"), "Samoan"),
    known("sna_Latn", Some("sn"), "Shona"),
    known("snd_Arab", Some("sd"), "Sindhi"),
    known("som_Latn", Some("so"), "Somali"),
    known("sot_Latn", Some("st"), "Southern Sotho"),
    known("spa_Latn", Some("es"), "Spanish"),
    known("srd_Latn", Some("sc"), "Sardinian"),
    known("srp_Cyrl", Some("sr"), "Serbian"),
    known("ssw_Latn", Some("ss"), "Swati"),
    known("sun_Latn", Some("su"), "Sundanese"),
    known("swe_Latn", Some("sv"), "Swedish"),
    known("swh_Latn", Some("sw"), "Swahili"),
    known("szl_Latn", None, "Silesian"),
    known("tam_Taml", Some("ta"), "Tamil"),
    known("taq_Latn", None, "Tamasheq (Latin script)"),
    known("taq_Tfng", None, "Tamasheq (Tifinagh script)"),
    known("tat_Cyrl", Some("tt"), "Tatar"),
    known("tel_Telu", Some("te"), "Telugu"),
    known("tgk_Cyrl", Some("tg"), "Tajik"),
    known("tgl_Latn", Some("tl"), "Tagalog"),
    known("tha_Thai", Some("th"), "Thai"),
    known("tir_Ethi", Some("ti"), "Tigrinya"),
    known("tpi_Latn", None, "Tok Pisin"),
    known("tsn_Latn", Some("tn"), "Tswana"),
    known("tso_Latn", Some("ts"), "Tsonga"),
    known("tuk_Latn", Some("tk"), "Turkmen"),
    known("tum_Latn", None, "Tumbuka"),
    known("tur_Latn", Some("tr"), "Turkish"),
    known("twi_Latn", Some("tw"), "Twi"),
    known("tzm_Tfng", None, "Central Atlas Tamazight"),
    known("uig_Arab", Some("ug"), "Uyghur"),
    known("ukr_Cyrl", Some("uk"), "Ukrainian"),
    known("umb_Latn", None, "Umbundu"),
    known("urd_Arab", Some("ur"), "Urdu"),
    known("uzn_Latn", Some("uz"), "Uzbek"),
    known("vec_Latn", None, "Venetian"),
    known("vie_Latn", Some("vi"), "Vietnamese"),
    known("war_Latn", None, "Waray"),
    known("wol_Latn", Some("wo"), "Wolof"),
    known("xho_Latn", Some("xh"), "Xhosa"),
    known("ydd_Hebr", Some("yi"), "Yiddish"),
    known("yor_Latn", Some("yo"), "Yoruba"),
    known("yue_Hant", None, "Cantonese"),
    known("zho_Hans", Some("zh"), "Chinese (Simplified)"),
    known("zho_Hant", None, "Chinese (Traditional)"),
    known("zsm_Latn", Some("ms"), "Malay"),
    known("zul_Latn", Some("zu"), "Zulu"),
];

/// Other spellings, lower case with `_` as separator, and the FLORES code they mean.
/// Covers macrolanguages (FLORES picks one variety), ISO 639-2/B codes, FLORES+ renamings,
/// region tags, and the default script of ISO 639-3 codes FLORES has in two scripts.
const ALIASES: &[(&str, &str)] = &[
    // macrolanguages and individual codes people use for them
    ("ara", "arb_Arab"),
    ("zho", "zho_Hans"),
    ("chi", "zho_Hans"),
    ("cmn", "zho_Hans"),
    ("cmn_hans", "zho_Hans"),
    ("cmn_hant", "zho_Hant"),
    ("fas", "pes_Arab"),
    ("per", "pes_Arab"),
    ("msa", "zsm_Latn"),
    ("may", "zsm_Latn"),
    ("lav", "lvs_Latn"),
    ("swa", "swh_Latn"),
    ("uzb", "uzn_Latn"),
    ("aze", "azj_Latn"),
    ("mon", "khk_Cyrl"),
    ("sqi", "als_Latn"),
    ("alb", "als_Latn"),
    ("nep", "npi_Deva"),
    ("ori", "ory_Orya"),
    ("pus", "pbt_Arab"),
    ("orm", "gaz_Latn"),
    ("kur", "kmr_Latn"),
    ("yid", "ydd_Hebr"),
    ("que", "quy_Latn"),
    ("mlg", "plt_Latn"),
    ("nor", "nob_Latn"),
    ("no", "nob_Latn"),
    ("aym", "ayr_Latn"),
    ("kau", "knc_Latn"),
    ("ful", "fuv_Latn"),
    ("fil", "tgl_Latn"),
    // ISO 639-2/B (bibliographic) codes
    ("fre", "fra_Latn"),
    ("ger", "deu_Latn"),
    ("dut", "nld_Latn"),
    ("gre", "ell_Grek"),
    ("arm", "hye_Armn"),
    ("geo", "kat_Geor"),
    ("ice", "isl_Latn"),
    ("mac", "mkd_Cyrl"),
    ("rum", "ron_Latn"),
    ("slo", "slk_Latn"),
    ("cze", "ces_Latn"),
    ("wel", "cym_Latn"),
    ("baq", "eus_Latn"),
    ("bur", "mya_Mymr"),
    ("tib", "bod_Tibt"),
    // region tags
    ("zh_cn", "zho_Hans"),
    ("zh_sg", "zho_Hans"),
    ("zh_tw", "zho_Hant"),
    ("zh_hk", "zho_Hant"),
    // default script where FLORES has one language in two scripts
    ("ace", "ace_Latn"),
    ("arb", "arb_Arab"),
    ("bjn", "bjn_Latn"),
    ("kas", "kas_Arab"),
    ("knc", "knc_Latn"),
    ("min", "min_Latn"),
    ("taq", "taq_Latn"),
];

impl Lang {
    /// Reads a language code or name; see the module documentation for what is accepted.
    pub fn parse(input: &str) -> Result<Lang> {
        let trimmed = input.trim();
        let key = trimmed.to_ascii_lowercase().replace('-', "_");
        if key.is_empty() {
            return Err(unknown(input));
        }
        if let Some((_, code)) = ALIASES.iter().find(|(alias, _)| *alias == key) {
            return Ok(Lang::from_static(code));
        }
        if let Some(entry) = KNOWN_LANGUAGES
            .iter()
            .find(|entry| entry.iso_639_1 == Some(key.as_str()))
        {
            return Ok(Lang::from_static(entry.code));
        }
        if is_ascii_letters(&key, 3) {
            let mut matching = KNOWN_LANGUAGES
                .iter()
                .filter(|entry| entry.code[..3] == key);
            if let (Some(entry), None) = (matching.next(), matching.next()) {
                return Ok(Lang::from_static(entry.code));
            }
        }
        if let Some(lang) = parse_code_with_script(&key) {
            return Ok(lang);
        }
        if let Some(entry) = KNOWN_LANGUAGES
            .iter()
            .find(|entry| entry.name.eq_ignore_ascii_case(trimmed))
        {
            return Ok(Lang::from_static(entry.code));
        }
        Err(unknown(trimmed))
    }

    /// The normalised FLORES-200 code, e.g. `eng_Latn`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// English display name ("English", "Chinese (Simplified)"); the code itself when unknown.
    pub fn name(&self) -> &str {
        match self.known() {
            Some(entry) => entry.name,
            None => &self.code,
        }
    }

    /// ISO 639-1 code when the language has one (`en`), else the ISO 639-3 part (`ast`).
    pub fn short(&self) -> &str {
        match self.known().and_then(|entry| entry.iso_639_1) {
            Some(iso) => iso,
            None => self.iso_639_3(),
        }
    }

    /// The ISO 639-3 part of the code (`eng`).
    pub fn iso_639_3(&self) -> &str {
        self.code.split('_').next().unwrap_or(&self.code)
    }

    /// The ISO 15924 script part of the code (`Latn`).
    pub fn script(&self) -> &str {
        self.code.split('_').nth(1).unwrap_or("")
    }

    /// Whether the language is in the built-in table (else only its code is known).
    pub fn is_known(&self) -> bool {
        self.known().is_some()
    }

    /// Every language of the built-in table, in code order (for pickers).
    pub fn all_known() -> Vec<Lang> {
        KNOWN_LANGUAGES
            .iter()
            .map(|entry| Lang::from_static(entry.code))
            .collect()
    }

    /// English (`eng_Latn`), the default pivot.
    pub fn english() -> Lang {
        Lang::from_static("eng_Latn")
    }

    /// The ten default languages, in the order of [`DEFAULT_LANGUAGES`].
    pub fn defaults() -> Vec<Lang> {
        DEFAULT_LANGUAGES
            .iter()
            .filter_map(|code| Lang::parse(code).ok())
            .collect()
    }

    fn from_static(code: &str) -> Lang {
        Lang {
            code: code.to_string(),
        }
    }

    fn known(&self) -> Option<&'static KnownLanguage> {
        KNOWN_LANGUAGES.iter().find(|entry| entry.code == self.code)
    }
}

fn is_ascii_letters(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_lowercase())
}

/// `xxx_yyyy` (FLORES) or `xx_yyyy` (ISO 639-1 + script, e.g. `zh_hant`), already lower case.
fn parse_code_with_script(key: &str) -> Option<Lang> {
    let (language, script) = key.split_once('_')?;
    if !is_ascii_letters(script, 4) {
        return None;
    }
    let language = if is_ascii_letters(language, 3) {
        language.to_string()
    } else if is_ascii_letters(language, 2) {
        let entry = KNOWN_LANGUAGES
            .iter()
            .find(|entry| entry.iso_639_1 == Some(language))?;
        entry.code[..3].to_string()
    } else {
        return None;
    };
    let mut script_chars = script.chars();
    let script: String = script_chars
        .next()
        .map(|first| first.to_ascii_uppercase())
        .into_iter()
        .chain(script_chars)
        .collect();
    Some(Lang {
        code: format!("{language}_{script}"),
    })
}

fn unknown(input: &str) -> AnalysisError {
    AnalysisError::UnknownLanguage {
        input: input.to_string(),
        suggestions: suggestions(input),
    }
}

/// Up to five known languages closest to the input, by edit distance to their codes and names.
fn suggestions(input: &str) -> Vec<String> {
    let key = input.trim().to_ascii_lowercase();
    if key.is_empty() {
        return ["en", "fr", "zh"]
            .iter()
            .filter_map(|code| Lang::parse(code).ok())
            .map(|lang| format!("{} ({})", lang.code(), lang.name()))
            .collect();
    }
    let mut scored: Vec<(usize, &KnownLanguage)> = KNOWN_LANGUAGES
        .iter()
        .map(|entry| {
            let name = entry.name.to_ascii_lowercase();
            let mut candidates = vec![
                edit_distance(&key, &entry.code.to_ascii_lowercase()),
                edit_distance(&key, &entry.code[..3]),
                edit_distance(&key, &name),
            ];
            if let Some(iso) = entry.iso_639_1 {
                candidates.push(edit_distance(&key, iso));
            }
            // A name that starts with what was typed ("germ") is as good as a near miss.
            if key.len() >= 3 && name.starts_with(&key) {
                candidates.push(0);
            }
            (candidates.into_iter().min().unwrap_or(usize::MAX), entry)
        })
        .collect();
    scored.sort_by_key(|(distance, entry)| (*distance, entry.code));
    let limit = (key.len() / 2).max(1);
    scored
        .into_iter()
        .filter(|(distance, _)| *distance <= limit)
        .take(5)
        .map(|(_, entry)| format!("{} ({})", entry.code, entry.name))
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

impl FromStr for Lang {
    type Err = AnalysisError;

    fn from_str(s: &str) -> Result<Lang> {
        Lang::parse(s)
    }
}

impl TryFrom<String> for Lang {
    type Error = AnalysisError;

    fn try_from(value: String) -> Result<Lang> {
        Lang::parse(&value)
    }
}

impl From<Lang> for String {
    fn from(lang: Lang) -> String {
        lang.code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_codes_are_well_formed_and_unique() {
        let mut codes = HashSet::new();
        let mut names = HashSet::new();
        let mut short = HashSet::new();
        for entry in KNOWN_LANGUAGES {
            let lang = Lang::parse(entry.code).map_err(|e| e.to_string());
            assert_eq!(lang.map(|l| l.code), Ok(entry.code.to_string()));
            assert!(codes.insert(entry.code), "duplicate {}", entry.code);
            assert!(names.insert(entry.name), "duplicate name {}", entry.name);
            if let Some(iso) = entry.iso_639_1 {
                assert!(short.insert(iso), "duplicate ISO 639-1 {iso}");
            }
        }
        assert!(KNOWN_LANGUAGES.len() >= 200);
    }

    #[test]
    fn every_alias_points_into_the_table() {
        for (alias, code) in ALIASES {
            assert!(
                KNOWN_LANGUAGES.iter().any(|entry| entry.code == *code),
                "{alias} -> {code}"
            );
        }
    }

    #[test]
    fn iso_639_3_codes_with_two_scripts_have_a_default() {
        for entry in KNOWN_LANGUAGES {
            let prefix = &entry.code[..3];
            let count = KNOWN_LANGUAGES
                .iter()
                .filter(|other| &other.code[..3] == prefix)
                .count();
            if count > 1 {
                assert!(
                    ALIASES.iter().any(|(alias, _)| alias == &prefix),
                    "{prefix} needs a default script"
                );
            }
        }
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
    }
}
