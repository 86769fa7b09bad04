//! analysis.html rendered by a real browser (headless Chromium): the screenshot shows the
//! verdict box, the bar chart of harmful layers, the histograms with their range bands and the
//! table, found by their colours in the pixels, not by matching strings in the HTML.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        let ok = Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
        ok.then(|| PathBuf::from(name))
    })
}

/// Pixels of `rgb` (within 6 per channel) in the image.
fn count(img: &image::RgbaImage, rgb: [u8; 3]) -> usize {
    img.pixels().filter(|p| (0..3).all(|c| (p.0[c] as i32 - rgb[c] as i32).abs() <= 6)).count()
}

/// Rows of the image holding pixels of `rgb`: (first, last).
fn rows(img: &image::RgbaImage, rgb: [u8; 3]) -> Option<(u32, u32)> {
    let hit: Vec<u32> = img
        .enumerate_pixels()
        .filter(|(_, _, p)| (0..3).all(|c| (p.0[c] as i32 - rgb[c] as i32).abs() <= 6))
        .map(|(_, y, _)| y)
        .collect();
    Some((*hit.iter().min()?, *hit.iter().max()?))
}

fn screenshot(browser: &Path, page: &Path, png: &Path) {
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,1500"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(png.exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_page_shows_the_chart_the_histograms_and_the_table() {
    let Some(dir) = common::fixture("ppocr_cls") else { return };
    let Some(browser) = chromium() else {
        common::skipped("chromium not found (Debian: apt-get install chromium)");
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_ovpot"))
        .args(["analyze", "-m"])
        .arg(dir.join("model.xml"))
        .arg("--data")
        .arg(dir.join("calib"))
        .args(["--subset-size", "32", "--samples", "8", "--target-isa", "avx2", "--max-ignored", "3", "-o"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let png = out.path().join("page.png");
    screenshot(&browser, &out.path().join("analysis.html"), &png);
    let img = image::open(&png).unwrap().to_rgba8();
    assert_eq!(img.dimensions(), (1200, 1500));

    // The verdict box (its blue rule and pale ground), at the top.
    let verdict = rows(&img, [0x2b, 0x6c, 0xb0]).expect("no verdict box");
    assert!(verdict.0 < 200, "the verdict is not at the top: {verdict:?}");
    // The bar chart: orange bars of several lengths on many rows, below the verdict.
    let bars = rows(&img, [0xc0, 0x56, 0x21]).expect("no bar chart");
    assert!(bars.0 > verdict.1 && bars.1 - bars.0 > 200, "bars {bars:?}");
    assert!(count(&img, [0xc0, 0x56, 0x21]) > 2000);
    // Histograms: grey bins over blue range bands, below the chart.
    let bands = rows(&img, [0xbe, 0xe3, 0xf8]).expect("no range bands");
    assert!(bands.0 > bars.1, "histograms {bands:?} above the chart {bars:?}");
    assert!(count(&img, [0x4a, 0x55, 0x68]) > 1000, "no histogram bins");
    // The table's header row, below the histograms (when it fits in the window).
    let headers = rows(&img, [0xf3, 0xf6, 0xfa]);
    assert!(headers.is_some_and(|h| h.1 > bands.1), "no table header below the histograms: {headers:?}");
}
