//! Shrinking to the requested size with a box (area-average) filter: every source pixel is read
//! once, which keeps a 512² → 128² thumbnail well under a millisecond, and averaging (unlike
//! nearest-neighbour) does not alias fine structure such as CT noise into speckle.

use super::window::Image8;

/// The size that fits `width`×`height` into `max_size` on its longest side (never enlarged).
pub(crate) fn fit(width: u32, height: u32, max_size: Option<u32>) -> (u32, u32) {
    let Some(max) = max_size.filter(|m| *m > 0) else {
        return (width, height);
    };
    let longest = width.max(height);
    if longest <= max {
        return (width, height);
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(max) + u64::from(longest) / 2) / u64::from(longest)).max(1)
            as u32
    };
    (scale(width), scale(height))
}

/// Source index ranges `[start, end)` that each output index averages.
fn spans(source: u32, target: u32) -> Vec<(usize, usize)> {
    (0..u64::from(target))
        .map(|i| {
            let start = (i * u64::from(source) / u64::from(target)) as usize;
            let end = ((i + 1) * u64::from(source) / u64::from(target)) as usize;
            (start, end.max(start + 1))
        })
        .collect()
}

/// `image` shrunk to fit `max_size` (unchanged when it already fits).
pub(crate) fn shrink(image: Image8, max_size: Option<u32>) -> Image8 {
    let (width, height) = fit(image.width, image.height, max_size);
    if (width, height) == (image.width, image.height) {
        return image;
    }
    let channels = usize::from(image.channels);
    let stride = image.width as usize * channels;
    let columns = spans(image.width, width);
    let mut data = Vec::with_capacity(width as usize * height as usize * channels);
    // One row of column sums per output row: sum the source rows first, then the columns.
    let mut sums = vec![0u32; stride];
    for (y0, y1) in spans(image.height, height) {
        sums.iter_mut().for_each(|s| *s = 0);
        for row in image.data.chunks_exact(stride).take(y1).skip(y0) {
            for (s, &v) in sums.iter_mut().zip(row) {
                *s += u32::from(v);
            }
        }
        let rows = (y1 - y0) as u32;
        for &(x0, x1) in &columns {
            let count = rows * (x1 - x0) as u32;
            for c in 0..channels {
                let total: u32 = (x0..x1).map(|x| sums[x * channels + c]).sum();
                data.push(((total + count / 2) / count) as u8);
            }
        }
    }
    Image8 {
        width,
        height,
        channels: image.channels,
        data,
    }
}

/// Grey values (already normalized stored values) shrunk to fit `max_size` by the same box
/// average, before the window: a thin bright structure averaged with its surroundings keeps
/// its modality value's contrast instead of being clipped first (DCMTK scales this way too).
pub(crate) fn shrink_values(
    values: &[i32],
    width: u32,
    height: u32,
    max_size: Option<u32>,
) -> Option<(Vec<i32>, u32, u32)> {
    let (w, h) = fit(width, height, max_size);
    if (w, h) == (width, height) || values.len() < width as usize * height as usize {
        return None;
    }
    let stride = width as usize;
    let columns = spans(width, w);
    let mut out = Vec::with_capacity(w as usize * h as usize);
    let mut sums = vec![0i64; stride];
    for (y0, y1) in spans(height, h) {
        sums.iter_mut().for_each(|s| *s = 0);
        for row in values.chunks_exact(stride).take(y1).skip(y0) {
            for (s, &v) in sums.iter_mut().zip(row) {
                *s += i64::from(v);
            }
        }
        let rows = (y1 - y0) as i64;
        for &(x0, x1) in &columns {
            let count = rows * (x1 - x0) as i64;
            let total: i64 = sums[x0..x1].iter().sum();
            out.push(
                total.div_euclid(count) as i32 + i32::from(total.rem_euclid(count) * 2 >= count),
            );
        }
    }
    Some((out, w, h))
}
