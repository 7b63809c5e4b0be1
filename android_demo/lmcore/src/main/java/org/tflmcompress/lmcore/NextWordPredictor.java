package org.tflmcompress.lmcore;

import java.util.ArrayList;
import java.util.List;

/**
 * Next-word suggestions for text being typed: tokenizer, state bookkeeping and top-k together.
 *
 * <p>Everything an app does except running the model and drawing. Not thread safe: call it from
 * one thread (the app's inference thread).
 */
public final class NextWordPredictor {
  /** Per-position states kept for cheap rollbacks after edits (see {@link ContextFeeder}). */
  public static final int DEFAULT_MAX_SNAPSHOTS = 256;

  private final Vocabulary vocab;
  private final Tokenizer tokenizer;
  private final ContextFeeder feeder;

  public NextWordPredictor(Bundle bundle, StepModel model, boolean lowercase, int maxSnapshots) {
    this.vocab = bundle.getVocabulary();
    this.tokenizer = new Tokenizer(vocab, lowercase);
    this.feeder = new ContextFeeder(bundle.getMeta(), model, maxSnapshots);
  }

  public NextWordPredictor(Bundle bundle, StepModel model, boolean lowercase) {
    this(bundle, model, lowercase, DEFAULT_MAX_SNAPSHOTS);
  }

  public Tokenizer getTokenizer() {
    return tokenizer;
  }

  /**
   * Suggests the {@code k} likeliest next words after {@code text}.
   *
   * <p>Runs the model on the finished words only (see {@link Tokenizer#context}); while a word is
   * being typed the suggestions are the likeliest words that start with it, from the same logits.
   * {@code <eos>} and {@code <unk>} are never suggested.
   */
  public Prediction predict(String text, int k) {
    Tokenizer.Context context = tokenizer.context(text);
    int steps = feeder.advanceTo(context.ids);
    float[] logits = feeder.logits();
    int[] ids = TopK.select(logits, k, wordFilter(vocab, context.partialWord));
    double[] probabilities = TopK.probabilities(logits, ids);
    List<Suggestion> suggestions = new ArrayList<Suggestion>(ids.length);
    for (int i = 0; i < ids.length; i++) {
      suggestions.add(new Suggestion(ids[i], vocab.word(ids[i]), probabilities[i]));
    }
    return new Prediction(suggestions, steps, context.ids.length, context.partialWord);
  }

  /** Forgets the fed context (the next prediction re-feeds all of it). */
  public void reset() {
    feeder.reset();
  }

  /** Words that may be suggested: never {@code <eos>}/{@code <unk>}; with a prefix, its words. */
  public static TopK.IdFilter wordFilter(final Vocabulary vocab, final String prefix) {
    final int eos = vocab.getEosId();
    final int unk = vocab.getUnkId();
    return new TopK.IdFilter() {
      @Override
      public boolean accept(int id) {
        return id != eos && id != unk && (prefix.isEmpty() || vocab.word(id).startsWith(prefix));
      }
    };
  }

  /** What {@link #predict} found. */
  public static final class Prediction {
    /** Best first. */
    public final List<Suggestion> suggestions;
    /** Step-model runs this prediction needed (0 when only the unfinished word changed). */
    public final int stepsRun;
    /** Tokens in the context, the leading {@code <eos>} included. */
    public final int contextLength;
    /** The unfinished word the suggestions start with, or "". */
    public final String partialWord;

    Prediction(List<Suggestion> suggestions, int stepsRun, int contextLength, String partialWord) {
      this.suggestions = suggestions;
      this.stepsRun = stepsRun;
      this.contextLength = contextLength;
      this.partialWord = partialWord;
    }
  }
}
