//! The renderer on real DICOM objects built here in memory (and, for JPEG 2000, pydicom's
//! shipped test files): values at known pixels, colour models, frames, codecs, placeholders,
//! the cache, request coalescing and the pool bound.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::mem::InMemElement;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_pixeldata::Transcode;
use dicom_pixeldata::image::{self, DynamicImage};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::*;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

/// Attributes of a test image; `pixels` is the whole PixelData value.
struct Spec {
    rows: u16,
    cols: u16,
    frames: u32,
    samples: u16,
    bits: u16,
    signed: bool,
    photometric: &'static str,
    pixels: PrimitiveValue,
    extra: Vec<InMemElement>,
}

fn grey16(rows: u16, cols: u16, values: &[i16]) -> Spec {
    Spec {
        rows,
        cols,
        frames: 1,
        samples: 1,
        bits: 16,
        signed: true,
        photometric: "MONOCHROME2",
        pixels: PrimitiveValue::U16(values.iter().map(|&v| v as u16).collect()),
        extra: Vec::new(),
    }
}

fn grey8(rows: u16, cols: u16, values: Vec<u8>) -> Spec {
    Spec {
        rows,
        cols,
        frames: 1,
        samples: 1,
        bits: 8,
        signed: false,
        photometric: "MONOCHROME2",
        pixels: PrimitiveValue::U8(values.into()),
        extra: Vec::new(),
    }
}

fn rgb8(rows: u16, cols: u16, photometric: &'static str, values: Vec<u8>) -> Spec {
    Spec {
        samples: 3,
        photometric,
        ..grey8(rows, cols, values)
    }
}

fn ds(tag: Tag, values: &[f64]) -> InMemElement {
    let text = values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\\");
    DataElement::new(tag, VR::DS, PrimitiveValue::from(text))
}

fn us(tag: Tag, values: &[u16]) -> InMemElement {
    DataElement::new(
        tag,
        VR::US,
        PrimitiveValue::U16(values.iter().copied().collect()),
    )
}

fn object(spec: Spec) -> dicom_object::DefaultDicomObject {
    let pixel_vr = if spec.bits > 8 { VR::OW } else { VR::OB };
    let mut elements = vec![
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.7"),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5"),
        us(tags::SAMPLES_PER_PIXEL, &[spec.samples]),
        DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, spec.photometric),
        us(tags::ROWS, &[spec.rows]),
        us(tags::COLUMNS, &[spec.cols]),
        us(tags::BITS_ALLOCATED, &[spec.bits]),
        us(tags::BITS_STORED, &[spec.bits]),
        us(tags::HIGH_BIT, &[spec.bits - 1]),
        us(tags::PIXEL_REPRESENTATION, &[u16::from(spec.signed)]),
        DataElement::new(tags::PIXEL_DATA, pixel_vr, spec.pixels),
    ];
    if spec.samples == 3 {
        elements.push(us(tags::PLANAR_CONFIGURATION, &[0]));
    }
    if spec.frames > 1 {
        elements.push(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from(spec.frames.to_string()),
        ));
    }
    let mut obj = InMemDicomObject::from_element_iter(elements);
    for e in spec.extra {
        obj.put(e);
    }
    obj.with_meta(
        FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
            .media_storage_sop_instance_uid("1.2.3.4.5")
            .transfer_syntax(EXPLICIT_LE),
    )
    .expect("meta")
}

fn part10(obj: &dicom_object::DefaultDicomObject) -> Vec<u8> {
    let mut out = Vec::new();
    obj.write_all(&mut out).expect("write");
    out
}

fn file(spec: Spec) -> Vec<u8> {
    part10(&object(spec))
}

/// Lossless, full size, the object's own window.
fn png() -> RenderParams {
    RenderParams {
        frame: 0,
        max_size: None,
        window: None,
        format: ImageFormat::Png,
        quality: 90,
    }
}

/// Draw synchronously (no pool) and decode the PNG back to pixels.
fn pixels(file: &[u8], params: &RenderParams) -> (DynamicImage, Rendered) {
    let rendered = draw(file, params);
    assert!(!rendered.placeholder, "unexpected placeholder");
    let img = image::load_from_memory(&rendered.bytes).expect("our output decodes");
    (img, rendered)
}

fn luma(file: &[u8], params: &RenderParams) -> Vec<u8> {
    pixels(file, params).0.to_luma8().into_raw()
}

fn rgb(file: &[u8], params: &RenderParams) -> Vec<u8> {
    pixels(file, params).0.to_rgb8().into_raw()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.len() as f64
}

/// HU -1024, 0, 40, 976 as stored values with intercept -1024, window 40/400.
fn ct(photometric: &'static str) -> Vec<u8> {
    let mut spec = grey16(2, 2, &[0, 1024, 1064, 2000]);
    spec.photometric = photometric;
    spec.extra = vec![
        ds(tags::RESCALE_INTERCEPT, &[-1024.0]),
        ds(tags::RESCALE_SLOPE, &[1.0]),
        ds(tags::WINDOW_CENTER, &[40.0, 300.0]),
        ds(tags::WINDOW_WIDTH, &[400.0, 1500.0]),
    ];
    file(spec)
}

#[test]
fn rescale_and_the_first_window_give_the_expected_values() {
    // LINEAR (PS3.3 C.11.2.1.2): HU 0 → ((0 - 39.5) / 399 + 0.5) * 255 = 102.3; HU 40 → 127.8.
    assert_eq!(luma(&ct("MONOCHROME2"), &png()), vec![0, 102, 128, 255]);
}

#[test]
fn monochrome1_is_inverted() {
    assert_eq!(luma(&ct("MONOCHROME1"), &png()), vec![255, 153, 127, 0]);
}

#[test]
fn an_explicit_window_replaces_the_objects() {
    let params = RenderParams {
        window: Some(WindowPreset::Lung.window()),
        ..png()
    };
    // Lung -600/1500: HU -1024 → ((-1024 + 600.5) / 1499 + 0.5) * 255 = 55.5; HU 0 → 229.7, HU 40 → 236.5.
    assert_eq!(luma(&ct("MONOCHROME2"), &params), vec![55, 230, 236, 255]);
}

#[test]
fn without_a_window_the_value_range_is_stretched() {
    let out = luma(&file(grey8(1, 3, vec![100, 150, 200])), &png());
    assert_eq!(out, vec![0, 128, 255]);
}

#[test]
fn voi_lut_sequence_maps_values() {
    let mut spec = grey8(1, 4, vec![0, 1, 2, 3]);
    let item = InMemDicomObject::from_element_iter([
        us(tags::LUT_DESCRIPTOR, &[4, 0, 8]),
        us(tags::LUT_DATA, &[0, 50, 100, 255]),
    ]);
    spec.extra = vec![DataElement::new(
        tags::VOILUT_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![item]),
    )];
    assert_eq!(luma(&file(spec), &png()), vec![0, 50, 100, 255]);
}

#[test]
fn rgb_interleaved_and_planar_are_drawn_exactly() {
    let colours = vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30];
    assert_eq!(
        rgb(&file(rgb8(2, 2, "RGB", colours.clone())), &png()),
        colours
    );
    let mut planar = rgb8(
        2,
        2,
        "RGB",
        vec![255, 0, 0, 10, 0, 255, 0, 20, 0, 0, 255, 30],
    );
    planar.extra = vec![us(tags::PLANAR_CONFIGURATION, &[1])];
    assert_eq!(rgb(&file(planar), &png()), colours);
}

#[test]
fn ybr_full_and_422_become_rgb() {
    // Red (255, 0, 0) is Y 76, Cb 85, Cr 255; grey 128 is 128, 128, 128.
    let out = rgb(
        &file(rgb8(1, 2, "YBR_FULL", vec![76, 85, 255, 128, 128, 128])),
        &png(),
    );
    assert!(out[0] >= 250 && out[1] <= 2 && out[2] <= 2, "{out:?}");
    assert_eq!(&out[3..], &[128, 128, 128]);
    // 422: Y1 Y2 Cb Cr for a pair sharing the chroma.
    let out = rgb(
        &file(rgb8(1, 2, "YBR_FULL_422", vec![76, 128, 128, 128])),
        &png(),
    );
    assert_eq!(out, vec![76, 76, 76, 128, 128, 128]);
}

#[test]
fn palette_colour_looks_up_each_channel() {
    let mut spec = grey8(1, 3, vec![0, 1, 2]);
    spec.photometric = "PALETTE COLOR";
    // 16-bit entries: the high byte is the 8-bit colour.
    spec.extra = vec![
        us(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, &[3, 0, 16]),
        us(
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            &[3, 0, 16],
        ),
        us(
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            &[3, 0, 16],
        ),
        DataElement::new(
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            VR::OW,
            PrimitiveValue::U16([0xFF00, 0, 0x1000].into_iter().collect()),
        ),
        DataElement::new(
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            VR::OW,
            PrimitiveValue::U16([0, 0xFF00, 0x2000].into_iter().collect()),
        ),
        DataElement::new(
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            VR::OW,
            PrimitiveValue::U16([0, 0, 0x3000].into_iter().collect()),
        ),
    ];
    assert_eq!(
        rgb(&file(spec), &png()),
        vec![255, 0, 0, 0, 255, 0, 16, 32, 48]
    );
}

fn three_frames() -> Vec<u8> {
    let mut spec = grey8(2, 2, [10u8, 20, 30].iter().flat_map(|&v| [v; 4]).collect());
    spec.frames = 3;
    spec.extra = vec![
        ds(tags::WINDOW_CENTER, &[128.0]),
        ds(tags::WINDOW_WIDTH, &[256.0]),
    ];
    file(spec)
}

#[test]
fn multi_frame_draws_the_requested_frame_and_clamps() {
    let file = three_frames();
    for (frame, value) in [(0, 10), (1, 20), (2, 30), (99, 30)] {
        let params = RenderParams { frame, ..png() };
        let (img, rendered) = pixels(&file, &params);
        assert_eq!(rendered.frames, 3);
        assert_eq!(img.to_luma8().into_raw(), vec![value; 4], "frame {frame}");
    }
}

#[test]
fn scaling_keeps_the_aspect_and_averages() {
    // 8x4 columns alternating 0/255: shrunk to 4x2 every output pixel averages one of each.
    let values: Vec<u8> = (0..32).map(|i| if i % 2 == 0 { 0 } else { 255 }).collect();
    let mut spec = grey8(4, 8, values);
    spec.extra = vec![
        ds(tags::WINDOW_CENTER, &[128.0]),
        ds(tags::WINDOW_WIDTH, &[256.0]),
    ];
    let params = RenderParams {
        max_size: Some(4),
        ..png()
    };
    let (img, _) = pixels(&file(spec), &params);
    assert_eq!((img.width(), img.height()), (4, 2));
    assert!(img.to_luma8().iter().all(|&v| v == 128), "{img:?}");
    assert_eq!(scale::fit(512, 256, Some(128)), (128, 64));
    assert_eq!(scale::fit(100, 50, Some(128)), (100, 50));
}

/// A 64x64 colour gradient in `frames` frames (frame f shifted by 40 f).
fn gradient(frames: u32) -> dicom_object::DefaultDicomObject {
    let mut values = Vec::new();
    for f in 0..frames {
        for y in 0..64u32 {
            for x in 0..64u32 {
                values.extend_from_slice(&[
                    (x * 4) as u8,
                    (y * 4) as u8,
                    ((x + y + f * 40) * 2 % 256) as u8,
                ]);
            }
        }
    }
    let mut spec = rgb8(64, 64, "RGB", values);
    spec.frames = frames;
    object(spec)
}

#[test]
fn jpeg_baseline_multi_frame_decodes_close_to_the_original() {
    let original = gradient(3);
    let mut jpeg = original.clone();
    let ts = TransferSyntaxRegistry
        .get(JPEG_BASELINE)
        .expect("registered");
    jpeg.transcode(ts).expect("JPEG baseline encoder");
    let (original, jpeg) = (part10(&original), part10(&jpeg));
    for frame in 0..3 {
        let params = RenderParams { frame, ..png() };
        let diff = mean_abs_diff(&rgb(&original, &params), &rgb(&jpeg, &params));
        assert!(diff < 4.0, "frame {frame}: mean difference {diff}");
    }
    // The frames differ, so a wrong frame would not pass the check above.
    let f0 = rgb(&original, &png());
    let f2 = rgb(&original, &RenderParams { frame: 2, ..png() });
    assert!(mean_abs_diff(&f0, &f2) > 20.0);
}

#[test]
fn reduced_resolution_thumbnails_match_the_full_decode() {
    let thumb = |max| RenderParams {
        max_size: Some(max),
        ..png()
    };
    // JPEG baseline scaled in the IDCT (64 → 16 is 1/4) against the uncompressed original.
    let original = gradient(2);
    let mut jpeg = original.clone();
    let ts = TransferSyntaxRegistry
        .get(JPEG_BASELINE)
        .expect("registered");
    jpeg.transcode(ts).expect("encode");
    let (original, jpeg) = (part10(&original), part10(&jpeg));
    for frame in 0..2 {
        let params = RenderParams { frame, ..thumb(16) };
        let (a, b) = (pixels(&original, &params).0, pixels(&jpeg, &params).0);
        assert_eq!((b.width(), b.height()), (16, 16));
        let diff = mean_abs_diff(a.to_rgb8().as_raw(), b.to_rgb8().as_raw());
        assert!(diff < 4.0, "JPEG frame {frame}: mean difference {diff}");
    }
    // JPEG 2000 decoded two wavelet levels down (64 → 16), with a window: min–max would
    // stretch the range of the smoother reduced image, not the stored one.
    let windowed = RenderParams {
        window: Some(Window {
            center: 1000.0,
            width: 2000.0,
        }),
        ..thumb(16)
    };
    let (a, b) = (
        pixels(&pydicom_file("MR_small.dcm"), &windowed).0,
        pixels(&pydicom_file("MR_small_jp2klossless.dcm"), &windowed).0,
    );
    assert_eq!((b.width(), b.height()), (16, 16));
    let diff = mean_abs_diff(a.to_luma8().as_raw(), b.to_luma8().as_raw());
    let windowed32 = RenderParams {
        max_size: Some(32),
        ..windowed.clone()
    };
    let (a, b) = (
        pixels(&pydicom_file("MR_small.dcm"), &windowed32).0,
        pixels(&pydicom_file("MR_small_jp2klossless.dcm"), &windowed32).0,
    );
    let diff32 = mean_abs_diff(a.to_luma8().as_raw(), b.to_luma8().as_raw());
    // At 16 px the codec decodes one wavelet level down (32²) and the box filter halves that;
    // the low-pass band is not a box average, so on this 64² MR full of fine detail they
    // differ by a few grey levels (tests/integration/test_render.py compares a 512² CT
    // thumbnail with DCMTK). At 32 px nothing is reduced: exact.
    assert!(diff32 < 1.0, "JPEG 2000 at 32: mean difference {diff32}");
    assert!(diff < 8.0, "JPEG 2000 at 16: mean difference {diff}");
}

/// A test file shipped with pydicom in the project's virtualenv (the integration tests use the
/// same files); missing is a failure, not a skip.
fn pydicom_file(name: &str) -> Vec<u8> {
    let lib = PathBuf::from(std::env::var("MIFAS_VENV").unwrap_or_else(|_| "/work/venv".into()))
        .join("lib");
    let found = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            e.path()
                .join("site-packages/pydicom/data/test_files")
                .join(name)
        })
        .find(|p| p.is_file());
    let path = found.unwrap_or_else(|| panic!("pydicom's {name} not found under {lib:?}"));
    std::fs::read(path).expect("read pydicom test file")
}

#[test]
fn jpeg_2000_lossless_matches_the_uncompressed_original() {
    let original = luma(&pydicom_file("MR_small.dcm"), &png());
    let j2k = luma(&pydicom_file("MR_small_jp2klossless.dcm"), &png());
    assert_eq!(original.len(), 64 * 64);
    assert_eq!(mean_abs_diff(&original, &j2k), 0.0);
    // Not a flat image: the comparison means something.
    assert!(original.iter().max() > original.iter().min());
}

#[test]
fn non_images_and_broken_pixel_data_give_the_placeholder() {
    let sr = InMemDicomObject::from_element_iter([
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.88.11"),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.6"),
    ])
    .with_meta(
        FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.88.11")
            .media_storage_sop_instance_uid("1.2.3.4.6")
            .transfer_syntax(EXPLICIT_LE),
    )
    .expect("meta");
    let out = draw(&part10(&sr), &RenderParams::thumbnail());
    assert!(out.placeholder);
    assert_eq!(out.frames, 0);
    assert_eq!(out.bytes, placeholder::placeholder(ImageFormat::Jpeg));
    image::load_from_memory(&out.bytes).expect("the placeholder is a real JPEG");

    // Native pixel data shorter than the frame.
    let mut short = grey16(4, 4, &[0; 4]);
    short.frames = 1;
    let out = draw(&file(short), &RenderParams::thumbnail());
    assert!(out.placeholder);
    assert_eq!(out.frames, 1);

    // JPEG baseline whose fragment is garbage.
    let mut jpeg = gradient(1);
    let ts = TransferSyntaxRegistry
        .get(JPEG_BASELINE)
        .expect("registered");
    jpeg.transcode(ts).expect("encode");
    jpeg.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        dicom_core::value::PixelFragmentSequence::new_fragments(vec![vec![
            0xFFu8, 0xD8, 1, 2, 3, 4,
        ]]),
    ));
    let out = draw(&part10(&jpeg), &RenderParams::thumbnail());
    assert!(out.placeholder);

    // Not DICOM at all.
    assert!(draw(b"hello", &RenderParams::thumbnail()).placeholder);
}

fn counting_load(
    file: Bytes,
    calls: &Arc<AtomicUsize>,
) -> impl FnOnce() -> std::future::Ready<Result<Bytes, String>> + use<> {
    let calls = Arc::clone(calls);
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(file))
    }
}

#[tokio::test]
async fn cache_hits_do_not_load_and_return_the_same_bytes() {
    let renderer = Renderer::new(2, 1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let ct = Bytes::from(ct("MONOCHROME2"));
    let thumb = RenderParams::thumbnail();
    let first = renderer
        .render("1.2.3", &thumb, counting_load(ct.clone(), &calls))
        .await;
    let second = renderer
        .render("1.2.3", &thumb, counting_load(ct.clone(), &calls))
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(first.bytes, second.bytes);
    assert!(!second.placeholder);
    // Other parameters or another instance are other entries.
    let lung = RenderParams {
        window: Some(WindowPreset::Lung.window()),
        ..thumb.clone()
    };
    renderer
        .render("1.2.3", &lung, counting_load(ct.clone(), &calls))
        .await;
    renderer
        .render("1.2.4", &thumb, counting_load(ct.clone(), &calls))
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let metrics = renderer.metrics_text();
    assert!(metrics.contains("mifas_render_total 3\n"), "{metrics}");
    assert!(
        metrics.contains("mifas_render_cache_hits_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_cache_is_bounded_in_bytes() {
    let ct = Bytes::from(ct("MONOCHROME2"));
    let one = draw(&ct, &RenderParams::thumbnail()).bytes.len() as u64;
    // Room for two entries (image + key + bookkeeping), not three.
    let renderer = Renderer::new(1, 2 * (one + 200));
    let calls = Arc::new(AtomicUsize::new(0));
    for uid in ["1.1", "1.2", "1.3", "1.1"] {
        renderer
            .render(
                uid,
                &RenderParams::thumbnail(),
                counting_load(ct.clone(), &calls),
            )
            .await;
    }
    // 1.1 was evicted by 1.3, so it loads again.
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let (entries, bytes) = renderer.cache.usage();
    assert_eq!(entries, 2);
    assert!(bytes <= 2 * (one + 200));
}

#[tokio::test]
async fn a_failed_load_gives_the_placeholder_and_is_not_cached() {
    let renderer = Renderer::new(1, 1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let c = Arc::clone(&calls);
        let out = renderer
            .render("1.9", &RenderParams::thumbnail(), move || {
                c.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Err("site down".to_string()))
            })
            .await;
        assert!(out.placeholder);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_requests_for_one_image_render_once() {
    let renderer = Renderer::new(2, 1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let ct = Bytes::from(ct("MONOCHROME2"));
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let first_calls = Arc::clone(&calls);
    let first_file = ct.clone();
    let params = RenderParams::thumbnail();
    let first = renderer.render("1.5", &params, move || async move {
        first_calls.fetch_add(1, Ordering::SeqCst);
        // Hold the first render in its load until the second request is waiting.
        let _ = released.await;
        Ok(first_file)
    });
    let second = renderer.render("1.5", &params, counting_load(ct.clone(), &calls));
    let (a, b, ()) = tokio::join!(first, second, async {
        tokio::task::yield_now().await;
        let _ = release.send(());
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(a.bytes, b.bytes);
    assert!(
        renderer
            .metrics_text()
            .contains("mifas_render_coalesced_total 1\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_threads_renders_run_at_once() {
    // 1024² 16-bit: each render takes milliseconds, so unbounded renders would overlap.
    let values: Vec<i16> = (0..1024 * 1024).map(|i| (i % 4096) as i16).collect();
    let big = Bytes::from(file(grey16(1024, 1024, &values)));
    let renderer = Arc::new(Renderer::new(2, 0));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let renderer = Arc::clone(&renderer);
        let load = counting_load(big.clone(), &calls);
        tasks.push(tokio::spawn(async move {
            let params = RenderParams {
                frame: 0,
                max_size: Some(1024),
                window: None,
                format: ImageFormat::Png,
                quality: 90,
            };
            renderer.render(&format!("1.{i}"), &params, load).await
        }));
    }
    for task in tasks {
        assert!(!task.await.expect("render task").placeholder);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 12);
    let peak = renderer.peak_concurrency();
    assert!((1..=2).contains(&peak), "peak {peak}");
}
