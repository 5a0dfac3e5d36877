package trellis.bench.bpm;

import org.flowable.engine.delegate.DelegateExecution;
import org.flowable.engine.delegate.JavaDelegate;

/**
 * The process's service task: amount = instance number % 1000. The driver
 * hands the instance number in as the start variable {@code n}.
 */
public class AmountDelegate implements JavaDelegate {
    @Override
    public void execute(DelegateExecution execution) {
        Object n = execution.getVariable("n");
        long num = (n instanceof Number) ? ((Number) n).longValue() : 0L;
        execution.setVariable("amount", (int) (num % 1000L));
    }
}
