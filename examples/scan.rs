//! The floor under every CSV reader: read a file once and count its newlines, nothing else.
//! `benches/read_csv.py` runs it beside `faultline score` so the table says how far parsing is
//! from simply seeing the bytes.
//!
//! cargo run --release --example scan -- FILE

use std::io::Read;

fn main() -> std::io::Result<()> {
    let path = std::env::args().nth(1).expect("usage: scan FILE");
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut bytes, mut lines) = (0usize, 0usize);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n;
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
    println!("{bytes} bytes, {lines} lines");
    Ok(())
}
