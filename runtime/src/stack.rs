//! The per-loop stacks of `#[grad]` tapes, with their memory recycled.
//!
//! A loop's reverse pass needs what each iteration saved, last in first out: a `Vec`
//! pushed by the forward pass and popped by the reverse pass. A fresh `Vec` per gradient
//! call means fresh pages per call, and on this project's machine first-touch memory
//! runs at about 1 GB/s: for the ADBench GMM gradient (10 MB of stacks) page faults and
//! regrowth copies were a quarter of the time. [`Stack`] is that `Vec`, except that
//! when it is dropped (after the reverse pass, or with an unused tape) its allocation goes
//! back to a small per-thread pool, and the next stack with the same alignment takes it
//! (PyTorch and JAX keep caching allocators for the same reason).
//!
//! Safety: a block in the pool is exactly an allocation the global allocator made for a
//! `Vec` (`ptr`, `Layout`); a new stack takes one only when the layout is that of an
//! array of its element type (`align_of::<T>()` equal, size a multiple of
//! `size_of::<T>()`), so the `Vec` built from it frees or grows it with the same layout.

use core::alloc::Layout;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use std::cell::RefCell;

/// At most this many blocks, and this many bytes, wait in a thread's pool.
const MAX_BLOCKS: usize = 64;
const MAX_BYTES: usize = 1 << 30;

struct Pool {
    blocks: Vec<(NonNull<u8>, Layout)>,
    bytes: usize,
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (ptr, layout) in self.blocks.drain(..) {
            // SAFETY: every block was allocated by the global allocator with `layout`
            // (it came from a `Vec` with that capacity) and is owned by the pool alone.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
        }
    }
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { blocks: Vec::new(), bytes: 0 }) };
}

/// A `Vec` whose allocation is recycled when it is dropped (see the module docs).
pub struct Stack<T> {
    items: ManuallyDrop<Vec<T>>,
}

impl<T> Stack<T> {
    /// An empty stack, reusing the largest pooled block that fits `T`'s layout.
    pub fn new() -> Self {
        let (size, align) = (core::mem::size_of::<T>(), core::mem::align_of::<T>());
        if size == 0 {
            return Stack {
                items: ManuallyDrop::new(Vec::new()),
            };
        }
        let taken = POOL
            .try_with(|pool| {
                let mut pool = pool.borrow_mut();
                let best = pool
                    .blocks
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, l))| l.align() == align && l.size() % size == 0)
                    .max_by_key(|(_, (_, l))| l.size())
                    .map(|(k, _)| k)?;
                let (ptr, layout) = pool.blocks.swap_remove(best);
                pool.bytes -= layout.size();
                Some((ptr, layout))
            })
            .ok()
            .flatten();
        let items = match taken {
            // SAFETY: the block was allocated by the global allocator with `layout`,
            // whose alignment is `align_of::<T>()` and whose size is `cap` elements of
            // `T`: exactly the allocation of a `Vec<T>` of capacity `cap`, now owned here.
            Some((ptr, layout)) => unsafe {
                Vec::from_raw_parts(ptr.as_ptr().cast::<T>(), 0, layout.size() / size)
            },
            None => Vec::new(),
        };
        Stack {
            items: ManuallyDrop::new(items),
        }
    }
}

impl<T> Stack<T> {
    /// Pushes onto a stack whose capacity was reserved for it (a `for` loop reserves
    /// its trip count before it runs). Unlike `Vec::push` there is no call to a growth
    /// path inside the loop, only a check whose failure never returns, so the compiler
    /// can keep the loop's floating-point values in registers across the push instead
    /// of spilling them around a possible call (every `xmm` register is caller-saved).
    ///
    /// # Panics
    /// If the stack is full: the reservation was too small, a bug in the caller.
    #[inline(always)]
    pub fn push_reserved(&mut self, value: T) {
        let len = self.items.len();
        if len == self.items.capacity() {
            reservation_exceeded();
        }
        // SAFETY: `len < capacity`, so slot `len` is allocated and unused; writing it and
        // then raising the length by one is exactly what `Vec::push` does without growth.
        unsafe {
            self.items.as_mut_ptr().add(len).write(value);
            self.items.set_len(len + 1);
        }
    }
}

#[cold]
#[inline(never)]
fn reservation_exceeded() -> ! {
    panic!("#[grad] tape: a loop pushed more entries than it reserved (a bug in backprop)")
}

impl<T> Default for Stack<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Deref for Stack<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.items
    }
}

impl<T> DerefMut for Stack<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.items
    }
}

impl<T> Drop for Stack<T> {
    fn drop(&mut self) {
        // SAFETY: `items` is taken once, here, and not used again.
        let mut items = unsafe { ManuallyDrop::take(&mut self.items) };
        items.clear();
        let cap = items.capacity();
        if cap == 0 || core::mem::size_of::<T>() == 0 {
            return;
        }
        let Ok(layout) = Layout::array::<T>(cap) else {
            return;
        };
        let mut items = ManuallyDrop::new(items);
        let ptr = NonNull::new(items.as_mut_ptr().cast::<u8>()).expect("a Vec with capacity");
        let kept = POOL
            .try_with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.blocks.len() < MAX_BLOCKS && pool.bytes + layout.size() <= MAX_BYTES {
                    pool.bytes += layout.size();
                    pool.blocks.push((ptr, layout));
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if !kept {
            // The pool is full: free the allocation with the `Vec` it belongs to.
            drop(ManuallyDrop::into_inner(items));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Stack;

    #[test]
    fn a_dropped_stack_lends_its_allocation_to_the_next() {
        let mut a: Stack<(f64, usize)> = Stack::new();
        a.extend((0..1000).map(|k| (k as f64, k)));
        let cap = a.capacity();
        let ptr = a.as_ptr() as usize;
        drop(a);
        // Same alignment, size a multiple of 16: the block is reused, and empty.
        let b: Stack<(f64, f64)> = Stack::new();
        assert_eq!(b.len(), 0);
        assert_eq!(b.as_ptr() as usize, ptr);
        assert_eq!(b.capacity(), cap);
        // A different alignment does not take it.
        let c: Stack<u8> = Stack::new();
        assert_eq!(c.capacity(), 0);
    }

    #[test]
    fn values_survive_growth_and_pop_in_order() {
        let mut s: Stack<Vec<f64>> = Stack::new();
        for k in 0..100 {
            s.push(vec![k as f64; 3]);
        }
        for k in (0..100).rev() {
            assert_eq!(s.pop(), Some(vec![k as f64; 3]));
        }
    }
}
